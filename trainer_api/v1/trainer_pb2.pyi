import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_PENDING: _ClassVar[RunStatus]
    RUN_STATUS_DISPATCHING: _ClassVar[RunStatus]
    RUN_STATUS_RUNNING: _ClassVar[RunStatus]
    RUN_STATUS_COMPLETED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]
    RUN_STATUS_CANCELLED: _ClassVar[RunStatus]

class TerminalCause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TERMINAL_CAUSE_UNSPECIFIED: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_COMPLETED: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_EXIT_CODE: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_SIGNAL: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_HEARTBEAT_TIMEOUT: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_TIME_LIMIT: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_LOST: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_UNSCHEDULABLE: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_SPAWN_ERROR: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_CANCELLED: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_CHECKPOINT_IGNORED: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_MEMORY_LIMIT: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_NOT_LEARNING: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_SLURM_CANCELLED: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_NODE_FAILURE: _ClassVar[TerminalCause]
    TERMINAL_CAUSE_PREEMPTED: _ClassVar[TerminalCause]

class LogStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_STREAM_UNSPECIFIED: _ClassVar[LogStream]
    LOG_STREAM_STDOUT: _ClassVar[LogStream]
    LOG_STREAM_STDERR: _ClassVar[LogStream]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_PENDING: RunStatus
RUN_STATUS_DISPATCHING: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_COMPLETED: RunStatus
RUN_STATUS_FAILED: RunStatus
RUN_STATUS_CANCELLED: RunStatus
TERMINAL_CAUSE_UNSPECIFIED: TerminalCause
TERMINAL_CAUSE_COMPLETED: TerminalCause
TERMINAL_CAUSE_EXIT_CODE: TerminalCause
TERMINAL_CAUSE_SIGNAL: TerminalCause
TERMINAL_CAUSE_HEARTBEAT_TIMEOUT: TerminalCause
TERMINAL_CAUSE_TIME_LIMIT: TerminalCause
TERMINAL_CAUSE_LOST: TerminalCause
TERMINAL_CAUSE_UNSCHEDULABLE: TerminalCause
TERMINAL_CAUSE_SPAWN_ERROR: TerminalCause
TERMINAL_CAUSE_CANCELLED: TerminalCause
TERMINAL_CAUSE_CHECKPOINT_IGNORED: TerminalCause
TERMINAL_CAUSE_MEMORY_LIMIT: TerminalCause
TERMINAL_CAUSE_NOT_LEARNING: TerminalCause
TERMINAL_CAUSE_SLURM_CANCELLED: TerminalCause
TERMINAL_CAUSE_NODE_FAILURE: TerminalCause
TERMINAL_CAUSE_PREEMPTED: TerminalCause
LOG_STREAM_UNSPECIFIED: LogStream
LOG_STREAM_STDOUT: LogStream
LOG_STREAM_STDERR: LogStream

class Heartbeat(_message.Message):
    __slots__ = ("sent_at", "received_at", "beat", "step", "episode", "last_return", "mean_return", "steps_per_s", "rss_bytes", "gpu_mem_bytes", "progress", "updates", "metrics_finite", "phase")
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    BEAT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    LAST_RETURN_FIELD_NUMBER: _ClassVar[int]
    MEAN_RETURN_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_MEM_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FINITE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    beat: int
    step: int
    episode: int
    last_return: float
    mean_return: float
    steps_per_s: float
    rss_bytes: int
    gpu_mem_bytes: int
    progress: _struct_pb2.Struct
    updates: int
    metrics_finite: bool
    phase: str
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., beat: _Optional[int] = ..., step: _Optional[int] = ..., episode: _Optional[int] = ..., last_return: _Optional[float] = ..., mean_return: _Optional[float] = ..., steps_per_s: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., gpu_mem_bytes: _Optional[int] = ..., progress: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., updates: _Optional[int] = ..., metrics_finite: _Optional[bool] = ..., phase: _Optional[str] = ...) -> None: ...

class RunFlag(_message.Message):
    __slots__ = ("rule", "action", "flagged_at", "cleared_at", "evidence", "cleared_evidence", "seq", "attempt")
    RULE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_AT_FIELD_NUMBER: _ClassVar[int]
    CLEARED_AT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    CLEARED_EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    rule: str
    action: str
    flagged_at: _timestamp_pb2.Timestamp
    cleared_at: _timestamp_pb2.Timestamp
    evidence: _struct_pb2.Struct
    cleared_evidence: _struct_pb2.Struct
    seq: int
    attempt: int
    def __init__(self, rule: _Optional[str] = ..., action: _Optional[str] = ..., flagged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cleared_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., evidence: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., cleared_evidence: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., seq: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class RunRecord(_message.Message):
    __slots__ = ("run_id", "status", "cause", "exit_code", "signal", "waiting_reason", "gpus", "pid", "submitted_at", "started_at", "finished_at", "updated_at", "last_heartbeat", "artifact_count", "last_seq", "config_json", "priority", "cancel_requested_by", "cancel_reason", "message", "digest", "submitted_by", "host", "gpus_held", "name", "tags", "submitted_seq", "attempt", "max_attempts", "resume_from", "last_attempt_cause", "code_digest", "code_json", "attempt_code_json", "experiment", "flags", "launcher", "job_id", "job_gpus")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    WAITING_REASON_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    GPUS_HELD_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_CAUSE_FIELD_NUMBER: _ClassVar[int]
    CODE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    CODE_JSON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_CODE_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    LAUNCHER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_GPUS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: RunStatus
    cause: TerminalCause
    exit_code: int
    signal: int
    waiting_reason: str
    gpus: _containers.RepeatedScalarFieldContainer[str]
    pid: int
    submitted_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    last_heartbeat: Heartbeat
    artifact_count: int
    last_seq: int
    config_json: str
    priority: int
    cancel_requested_by: str
    cancel_reason: str
    message: str
    digest: str
    submitted_by: str
    host: str
    gpus_held: bool
    name: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    submitted_seq: int
    attempt: int
    max_attempts: int
    resume_from: str
    last_attempt_cause: TerminalCause
    code_digest: str
    code_json: str
    attempt_code_json: str
    experiment: str
    flags: _containers.RepeatedCompositeFieldContainer[RunFlag]
    launcher: str
    job_id: str
    job_gpus: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., cause: _Optional[_Union[TerminalCause, str]] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., waiting_reason: _Optional[str] = ..., gpus: _Optional[_Iterable[str]] = ..., pid: _Optional[int] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., artifact_count: _Optional[int] = ..., last_seq: _Optional[int] = ..., config_json: _Optional[str] = ..., priority: _Optional[int] = ..., cancel_requested_by: _Optional[str] = ..., cancel_reason: _Optional[str] = ..., message: _Optional[str] = ..., digest: _Optional[str] = ..., submitted_by: _Optional[str] = ..., host: _Optional[str] = ..., gpus_held: _Optional[bool] = ..., name: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., submitted_seq: _Optional[int] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., resume_from: _Optional[str] = ..., last_attempt_cause: _Optional[_Union[TerminalCause, str]] = ..., code_digest: _Optional[str] = ..., code_json: _Optional[str] = ..., attempt_code_json: _Optional[str] = ..., experiment: _Optional[str] = ..., flags: _Optional[_Iterable[_Union[RunFlag, _Mapping]]] = ..., launcher: _Optional[str] = ..., job_id: _Optional[str] = ..., job_gpus: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitRunRequest(_message.Message):
    __slots__ = ("config", "config_json", "submitted_by", "request_id")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    config: _struct_pb2.Struct
    config_json: str
    submitted_by: str
    request_id: str
    def __init__(self, config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., config_json: _Optional[str] = ..., submitted_by: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitRunResponse(_message.Message):
    __slots__ = ("run", "created", "same_config_run_id", "code_changes")
    RUN_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SAME_CONFIG_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_CHANGES_FIELD_NUMBER: _ClassVar[int]
    run: RunRecord
    created: bool
    same_config_run_id: str
    code_changes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run: _Optional[_Union[RunRecord, _Mapping]] = ..., created: _Optional[bool] = ..., same_config_run_id: _Optional[str] = ..., code_changes: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run", "head_seq")
    RUN_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    run: RunRecord
    head_seq: int
    def __init__(self, run: _Optional[_Union[RunRecord, _Mapping]] = ..., head_seq: _Optional[int] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("statuses", "tag", "page_size", "page_token")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[RunStatus]
    tag: str
    page_size: int
    page_token: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[RunStatus, str]]] = ..., tag: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token", "total_size", "head_seq")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunRecord]
    next_page_token: str
    total_size: int
    head_seq: int
    def __init__(self, runs: _Optional[_Iterable[_Union[RunRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ..., head_seq: _Optional[int] = ...) -> None: ...

class WatchRunsRequest(_message.Message):
    __slots__ = ("run_ids", "since_seq", "snapshot")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    since_seq: int
    snapshot: bool
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., since_seq: _Optional[int] = ..., snapshot: _Optional[bool] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("seq", "run_id", "type", "payload", "status", "recorded_at", "stream_version", "schema_version")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    STREAM_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    run_id: str
    type: str
    payload: _struct_pb2.Struct
    status: RunStatus
    recorded_at: _timestamp_pb2.Timestamp
    stream_version: int
    schema_version: int
    def __init__(self, seq: _Optional[int] = ..., run_id: _Optional[str] = ..., type: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[_Union[RunStatus, str]] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stream_version: _Optional[int] = ..., schema_version: _Optional[int] = ...) -> None: ...

class WatchRunsResponse(_message.Message):
    __slots__ = ("seq", "events", "snapshot", "snapshot_complete")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    events: _containers.RepeatedCompositeFieldContainer[RunEvent]
    snapshot: _containers.RepeatedCompositeFieldContainer[RunRecord]
    snapshot_complete: bool
    def __init__(self, seq: _Optional[int] = ..., events: _Optional[_Iterable[_Union[RunEvent, _Mapping]]] = ..., snapshot: _Optional[_Iterable[_Union[RunRecord, _Mapping]]] = ..., snapshot_complete: _Optional[bool] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id", "reason", "requested_by")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    reason: str
    requested_by: str
    def __init__(self, run_id: _Optional[str] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class CancelRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: RunRecord
    def __init__(self, run: _Optional[_Union[RunRecord, _Mapping]] = ...) -> None: ...

class RerunRunRequest(_message.Message):
    __slots__ = ("run_id", "requested_by", "reason", "from_scratch", "force")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FROM_SCRATCH_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    requested_by: str
    reason: str
    from_scratch: bool
    force: bool
    def __init__(self, run_id: _Optional[str] = ..., requested_by: _Optional[str] = ..., reason: _Optional[str] = ..., from_scratch: _Optional[bool] = ..., force: _Optional[bool] = ...) -> None: ...

class RerunRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: RunRecord
    def __init__(self, run: _Optional[_Union[RunRecord, _Mapping]] = ...) -> None: ...

class StreamLogsRequest(_message.Message):
    __slots__ = ("run_id", "stream", "offset", "follow")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    stream: LogStream
    offset: int
    follow: bool
    def __init__(self, run_id: _Optional[str] = ..., stream: _Optional[_Union[LogStream, str]] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("offset", "data", "eof")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    eof: bool
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class GetHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceHealth(_message.Message):
    __slots__ = ("name", "alive", "last_seen", "age_s", "pid", "host", "version", "versions", "started_at", "counters", "error")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    alive: bool
    last_seen: _timestamp_pb2.Timestamp
    age_s: float
    pid: int
    host: str
    version: str
    versions: _containers.ScalarMap[str, str]
    started_at: _timestamp_pb2.Timestamp
    counters: _struct_pb2.Struct
    error: str
    def __init__(self, name: _Optional[str] = ..., alive: _Optional[bool] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., age_s: _Optional[float] = ..., pid: _Optional[int] = ..., host: _Optional[str] = ..., version: _Optional[str] = ..., versions: _Optional[_Mapping[str, str]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., counters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class Gpu(_message.Message):
    __slots__ = ("index", "uuid", "name", "memory_total", "memory_free", "foreign_pids", "run_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_PIDS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    memory_total: int
    memory_free: int
    foreign_pids: _containers.RepeatedScalarFieldContainer[int]
    run_id: str
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., memory_total: _Optional[int] = ..., memory_free: _Optional[int] = ..., foreign_pids: _Optional[_Iterable[int]] = ..., run_id: _Optional[str] = ...) -> None: ...

class GetHealthResponse(_message.Message):
    __slots__ = ("services", "gpus", "gpu_source", "db_bytes", "last_seq", "gateway_seq", "watchers", "now")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_SOURCE_FIELD_NUMBER: _ClassVar[int]
    DB_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_SEQ_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceHealth]
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    gpu_source: str
    db_bytes: int
    last_seq: int
    gateway_seq: int
    watchers: int
    now: _timestamp_pb2.Timestamp
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceHealth, _Mapping]]] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ..., gpu_source: _Optional[str] = ..., db_bytes: _Optional[int] = ..., last_seq: _Optional[int] = ..., gateway_seq: _Optional[int] = ..., watchers: _Optional[int] = ..., now: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("run_id", "page_size", "page_token", "kind")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    page_size: int
    page_token: str
    kind: str
    def __init__(self, run_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("path", "kind", "size", "meta", "seq", "registered_at")
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    path: str
    kind: str
    size: int
    meta: _struct_pb2.Struct
    seq: int
    registered_at: _timestamp_pb2.Timestamp
    def __init__(self, path: _Optional[str] = ..., kind: _Optional[str] = ..., size: _Optional[int] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., seq: _Optional[int] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("artifacts", "next_page_token")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    next_page_token: str
    def __init__(self, artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetMetricsRequest(_message.Message):
    __slots__ = ("run_id", "offset", "limit", "keys", "tensorboard", "tensorboard_cursor")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    TENSORBOARD_FIELD_NUMBER: _ClassVar[int]
    TENSORBOARD_CURSOR_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    offset: int
    limit: int
    keys: _containers.RepeatedScalarFieldContainer[str]
    tensorboard: bool
    tensorboard_cursor: str
    def __init__(self, run_id: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., keys: _Optional[_Iterable[str]] = ..., tensorboard: _Optional[bool] = ..., tensorboard_cursor: _Optional[str] = ...) -> None: ...

class MetricPoint(_message.Message):
    __slots__ = ("step", "time", "values", "source")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    step: int
    time: _timestamp_pb2.Timestamp
    values: _containers.ScalarMap[str, float]
    source: str
    def __init__(self, step: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., values: _Optional[_Mapping[str, float]] = ..., source: _Optional[str] = ...) -> None: ...

class GetMetricsResponse(_message.Message):
    __slots__ = ("points", "next_offset", "next_tensorboard_cursor")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    NEXT_TENSORBOARD_CURSOR_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[MetricPoint]
    next_offset: int
    next_tensorboard_cursor: str
    def __init__(self, points: _Optional[_Iterable[_Union[MetricPoint, _Mapping]]] = ..., next_offset: _Optional[int] = ..., next_tensorboard_cursor: _Optional[str] = ...) -> None: ...

class AddEnvironmentRequest(_message.Message):
    __slots__ = ("name", "python", "added_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    ADDED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    python: str
    added_by: str
    def __init__(self, name: _Optional[str] = ..., python: _Optional[str] = ..., added_by: _Optional[str] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("name", "python", "python_version", "sys_path", "prefix", "sdk_version", "added_by", "added_at", "removed", "workers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    SYS_PATH_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    ADDED_BY_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    python: str
    python_version: str
    sys_path: _containers.RepeatedScalarFieldContainer[str]
    prefix: str
    sdk_version: str
    added_by: str
    added_at: _timestamp_pb2.Timestamp
    removed: bool
    workers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., python: _Optional[str] = ..., python_version: _Optional[str] = ..., sys_path: _Optional[_Iterable[str]] = ..., prefix: _Optional[str] = ..., sdk_version: _Optional[str] = ..., added_by: _Optional[str] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., removed: _Optional[bool] = ..., workers: _Optional[_Iterable[str]] = ...) -> None: ...

class AddEnvironmentResponse(_message.Message):
    __slots__ = ("environment", "created")
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    environment: Environment
    created: bool
    def __init__(self, environment: _Optional[_Union[Environment, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListEnvironmentsRequest(_message.Message):
    __slots__ = ("include_removed",)
    INCLUDE_REMOVED_FIELD_NUMBER: _ClassVar[int]
    include_removed: bool
    def __init__(self, include_removed: _Optional[bool] = ...) -> None: ...

class ListEnvironmentsResponse(_message.Message):
    __slots__ = ("environments",)
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    environments: _containers.RepeatedCompositeFieldContainer[Environment]
    def __init__(self, environments: _Optional[_Iterable[_Union[Environment, _Mapping]]] = ...) -> None: ...

class RemoveEnvironmentRequest(_message.Message):
    __slots__ = ("name", "removed_by", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REMOVED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    removed_by: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., removed_by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RemoveEnvironmentResponse(_message.Message):
    __slots__ = ("environment",)
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    environment: Environment
    def __init__(self, environment: _Optional[_Union[Environment, _Mapping]] = ...) -> None: ...

class CreateExperimentRequest(_message.Message):
    __slots__ = ("spec", "spec_json", "submitted_by")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    spec: _struct_pb2.Struct
    spec_json: str
    submitted_by: str
    def __init__(self, spec: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., spec_json: _Optional[str] = ..., submitted_by: _Optional[str] = ...) -> None: ...

class ExperimentCell(_message.Message):
    __slots__ = ("point", "seed", "run_id", "status", "attempt", "cause")
    POINT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    point: int
    seed: int
    run_id: str
    status: RunStatus
    attempt: int
    cause: TerminalCause
    def __init__(self, point: _Optional[int] = ..., seed: _Optional[int] = ..., run_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., attempt: _Optional[int] = ..., cause: _Optional[_Union[TerminalCause, str]] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("name", "status", "spec_json", "spec_digest", "points_json", "point_labels", "cells", "cell_count", "run_counts", "max_concurrent", "has_priority", "priority", "submitted_by", "created_at", "updated_at", "revision", "cancelled_by", "cancel_reason", "description")
    class RunCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    SPEC_DIGEST_FIELD_NUMBER: _ClassVar[int]
    POINTS_JSON_FIELD_NUMBER: _ClassVar[int]
    POINT_LABELS_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    CELL_COUNT_FIELD_NUMBER: _ClassVar[int]
    RUN_COUNTS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    HAS_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    spec_json: str
    spec_digest: str
    points_json: _containers.RepeatedScalarFieldContainer[str]
    point_labels: _containers.RepeatedScalarFieldContainer[str]
    cells: _containers.RepeatedCompositeFieldContainer[ExperimentCell]
    cell_count: int
    run_counts: _containers.ScalarMap[str, int]
    max_concurrent: int
    has_priority: bool
    priority: int
    submitted_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    revision: int
    cancelled_by: str
    cancel_reason: str
    description: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., spec_json: _Optional[str] = ..., spec_digest: _Optional[str] = ..., points_json: _Optional[_Iterable[str]] = ..., point_labels: _Optional[_Iterable[str]] = ..., cells: _Optional[_Iterable[_Union[ExperimentCell, _Mapping]]] = ..., cell_count: _Optional[int] = ..., run_counts: _Optional[_Mapping[str, int]] = ..., max_concurrent: _Optional[int] = ..., has_priority: _Optional[bool] = ..., priority: _Optional[int] = ..., submitted_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ..., cancelled_by: _Optional[str] = ..., cancel_reason: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CreateExperimentResponse(_message.Message):
    __slots__ = ("experiment", "created_runs")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_RUNS_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    created_runs: int
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ..., created_runs: _Optional[int] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments", "next_page_token")
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    next_page_token: str
    def __init__(self, experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelExperimentRequest(_message.Message):
    __slots__ = ("name", "requested_by", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    requested_by: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., requested_by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelExperimentResponse(_message.Message):
    __slots__ = ("experiment", "cancelled_run_ids")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    cancelled_run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ..., cancelled_run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RerunExperimentRequest(_message.Message):
    __slots__ = ("name", "requested_by", "reason", "from_scratch")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FROM_SCRATCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    requested_by: str
    reason: str
    from_scratch: bool
    def __init__(self, name: _Optional[str] = ..., requested_by: _Optional[str] = ..., reason: _Optional[str] = ..., from_scratch: _Optional[bool] = ...) -> None: ...

class RerunExperimentResponse(_message.Message):
    __slots__ = ("experiment", "rerun_run_ids")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    RERUN_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    rerun_run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ..., rerun_run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetExperimentResultsRequest(_message.Message):
    __slots__ = ("name", "metric", "curves", "grid_points")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CURVES_FIELD_NUMBER: _ClassVar[int]
    GRID_POINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    metric: str
    curves: bool
    grid_points: int
    def __init__(self, name: _Optional[str] = ..., metric: _Optional[str] = ..., curves: _Optional[bool] = ..., grid_points: _Optional[int] = ...) -> None: ...

class SeedFinal(_message.Message):
    __slots__ = ("seed", "run_id", "status", "has_value", "value", "step")
    SEED_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HAS_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    seed: int
    run_id: str
    status: RunStatus
    has_value: bool
    value: float
    step: int
    def __init__(self, seed: _Optional[int] = ..., run_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., has_value: _Optional[bool] = ..., value: _Optional[float] = ..., step: _Optional[int] = ...) -> None: ...

class PointResult(_message.Message):
    __slots__ = ("point", "label", "values_json", "seeds_total", "seeds_completed", "seeds_failed", "seeds_cancelled", "seeds_running", "seeds_pending", "n", "missing", "has_stats", "mean", "std", "median", "iqm", "ci_low", "ci_high", "rank", "best", "finals")
    POINT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALUES_JSON_FIELD_NUMBER: _ClassVar[int]
    SEEDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SEEDS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FAILED_FIELD_NUMBER: _ClassVar[int]
    SEEDS_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    SEEDS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    SEEDS_PENDING_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    HAS_STATS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    IQM_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    FINALS_FIELD_NUMBER: _ClassVar[int]
    point: int
    label: str
    values_json: str
    seeds_total: int
    seeds_completed: int
    seeds_failed: int
    seeds_cancelled: int
    seeds_running: int
    seeds_pending: int
    n: int
    missing: int
    has_stats: bool
    mean: float
    std: float
    median: float
    iqm: float
    ci_low: float
    ci_high: float
    rank: int
    best: bool
    finals: _containers.RepeatedCompositeFieldContainer[SeedFinal]
    def __init__(self, point: _Optional[int] = ..., label: _Optional[str] = ..., values_json: _Optional[str] = ..., seeds_total: _Optional[int] = ..., seeds_completed: _Optional[int] = ..., seeds_failed: _Optional[int] = ..., seeds_cancelled: _Optional[int] = ..., seeds_running: _Optional[int] = ..., seeds_pending: _Optional[int] = ..., n: _Optional[int] = ..., missing: _Optional[int] = ..., has_stats: _Optional[bool] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., median: _Optional[float] = ..., iqm: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., rank: _Optional[int] = ..., best: _Optional[bool] = ..., finals: _Optional[_Iterable[_Union[SeedFinal, _Mapping]]] = ...) -> None: ...

class Curve(_message.Message):
    __slots__ = ("point", "steps", "mean", "low", "high", "n")
    POINT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    point: int
    steps: _containers.RepeatedScalarFieldContainer[float]
    mean: _containers.RepeatedScalarFieldContainer[float]
    low: _containers.RepeatedScalarFieldContainer[float]
    high: _containers.RepeatedScalarFieldContainer[float]
    n: int
    def __init__(self, point: _Optional[int] = ..., steps: _Optional[_Iterable[float]] = ..., mean: _Optional[_Iterable[float]] = ..., low: _Optional[_Iterable[float]] = ..., high: _Optional[_Iterable[float]] = ..., n: _Optional[int] = ...) -> None: ...

class GetExperimentResultsResponse(_message.Message):
    __slots__ = ("metric", "metrics", "points", "curves", "skipped_lines", "results_json")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    CURVES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_LINES_FIELD_NUMBER: _ClassVar[int]
    RESULTS_JSON_FIELD_NUMBER: _ClassVar[int]
    metric: str
    metrics: _containers.RepeatedScalarFieldContainer[str]
    points: _containers.RepeatedCompositeFieldContainer[PointResult]
    curves: _containers.RepeatedCompositeFieldContainer[Curve]
    skipped_lines: int
    results_json: str
    def __init__(self, metric: _Optional[str] = ..., metrics: _Optional[_Iterable[str]] = ..., points: _Optional[_Iterable[_Union[PointResult, _Mapping]]] = ..., curves: _Optional[_Iterable[_Union[Curve, _Mapping]]] = ..., skipped_lines: _Optional[int] = ..., results_json: _Optional[str] = ...) -> None: ...
