"""Gap-free delivery of committed events (bus.catchup.EventFollower) when PUB/SUB
drops: a stalled subscriber past its high-water mark, a follower that joins late
while events are being committed, and a broker killed and restarted."""

from __future__ import annotations

import pytest
import zmq

from bus.badframes import BadFrameLog
from bus.catchup import EventFollower, registry_fetch
from bus.codec import Envelope, MessageType, decode, encode
from runtime.logs import service_logger
from bus.pubsub import Subscriber
from tests.system.stack import Stack
from tests.fixtures.clients import start_submitters
from tests.helpers import wait_until

STALL_EVENTS = 12_000  # more than the broker's per-subscriber queue (SNDHWM 10 000)


def submit_many(stack: Stack, n: int, first_seed: int = 0, window: int = 256) -> None:
    """``n`` submits of distinct configs, pipelined on one DEALER (group commit)."""
    d = stack.socket(zmq.DEALER)
    d.connect(stack.settings.registry)
    sent = got = 0
    try:
        while got < n:
            while sent < n and sent - got < window:
                seed = first_seed + sent
                d.send(encode(Envelope(
                    type=MessageType.REQUEST.value, source="test", ts=0.0, id=f"many-{seed}",
                    payload={"method": "submit", "args": {"config": {"seed": seed}}})))
                sent += 1
            assert d.poll(10_000), f"no reply after {got} of {n} submits"
            reply = decode(d.recv())
            assert reply.payload["ok"] is True, reply.payload
            assert reply.payload["result"]["created"] is True
            got += 1
    finally:
        d.close(linger=0)


def wait_registry_status(sub: Subscriber) -> None:
    """Once a status.registry message arrived, every subscription made on ``sub``
    before it has reached the registry's PUB too (they travel in order)."""
    wait_until(lambda: (m := sub.recv(100)) is not None and m.topic == "status.registry",
               10, message="a status.registry message")


def follow_until(follower: EventFollower, seq: int, out: list[Envelope],
                 timeout: float = 30) -> None:
    def reached() -> bool:
        out.extend(follower.poll(0.1))
        return follower.last_seq >= seq
    wait_until(reached, timeout, message=f"the follower to reach seq {seq} "
                                         f"(at {follower.last_seq})")


def assert_exactly_once_in_order(events: list[Envelope], head: int) -> None:
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, head + 1)), \
        f"{len(seqs)} events, {len(set(seqs))} distinct, first wrong at " \
        f"{next((i + 1 for i, s in enumerate(seqs) if s != i + 1), None)}"
    assert all(e.stream and e.type for e in events)


@pytest.mark.timeout(90)
def test_a_stalled_subscriber_past_its_hwm_gets_every_event_once(stack: Stack) -> None:
    sub = stack.subscriber(rcvhwm=10)
    c = stack.client()
    # No idle probe, no head hint: what is missing can only come through gap detection.
    follower = EventFollower(sub, registry_fetch(c), idle_probe_s=3600, head_hint=False)
    wait_registry_status(sub)
    assert follower.poll(0) == [] and follower.last_seq == 0

    submit_many(stack, STALL_EVENTS)  # the subscriber reads nothing meanwhile
    delivered: list[Envelope] = []

    def drained() -> bool:
        got = follower.poll(0.3)
        delivered.extend(got)
        return not got and follower.last_seq > 0
    wait_until(drained, 30, message="the stalled subscriber's queue to drain")
    live_before_gap = follower.last_seq
    assert live_before_gap < STALL_EVENTS, "nothing was dropped: the stall proved nothing"
    assert follower.fetched == 0

    c.call("submit", {"config": {"seed": STALL_EVENTS}})  # seq N+1, live, after the gap
    follow_until(follower, STALL_EVENTS + 1, delivered)
    assert_exactly_once_in_order(delivered, STALL_EVENTS + 1)
    assert follower.fetched == STALL_EVENTS - live_before_gap > 0
    assert c.call("ping")["head_seq"] == STALL_EVENTS + 1


@pytest.mark.timeout(90)
def test_the_registry_status_hint_fetches_a_lost_tail_without_probing(stack: Stack) -> None:
    """The last events of a burst dropped by a stalled subscriber, and nothing after
    them: the registry's status (its head seq) makes the follower fetch them, with no
    idle probe of the registry."""
    sub = stack.subscriber(rcvhwm=10)
    c = stack.client()
    follower = EventFollower(sub, registry_fetch(c), idle_probe_s=3600)
    wait_registry_status(sub)
    assert follower.poll(0) == [] and follower.last_seq == 0
    submit_many(stack, STALL_EVENTS)  # the subscriber reads nothing meanwhile
    delivered: list[Envelope] = []
    follow_until(follower, STALL_EVENTS, delivered)
    assert_exactly_once_in_order(delivered, STALL_EVENTS)
    assert follower.hinted >= 1 and follower.fetched > 0


def test_a_late_follower_gets_the_backlog_then_live_events(stack: Stack) -> None:
    submit_many(stack, 50)
    c = stack.client()
    sub = stack.subscriber()
    follower = EventFollower(sub, registry_fetch(c), idle_probe_s=3600)
    wait_registry_status(sub)  # the event subscription is live at the registry
    backlog = follower.poll(0)
    assert [e.seq for e in backlog] == list(range(1, 51)) and follower.fetched == 50

    # A stray message on event.* that is not the registry's (a buggy worker) takes no
    # seq: the registry's own event 51 is still delivered, not dropped as a duplicate.
    stray = stack.socket(zmq.PUB)
    stray.connect(stack.settings.bus_pub)
    fake = encode(Envelope(type="RunSubmitted", source="worker:r0123456789ab", ts=1.0,
                           payload={"run_id": "r0123456789ab"}, seq=51,
                           stream="run-r0123456789ab", stream_version=1, schema=1))

    def stray_ignored() -> bool:
        stray.send_multipart([b"event.r0123456789ab.RunSubmitted", fake])
        assert follower.poll(0.05) == [], "a stray event.* message was delivered"
        return follower.foreign > 0
    wait_until(stray_ignored, 10, message="the follower to see the stray message")

    delivered = list(backlog)
    for i in range(20):
        c.call("submit", {"config": {"seed": 1000 + i}})
        follow_until(follower, 51 + i, delivered, timeout=10)
    assert_exactly_once_in_order(delivered, 70)
    assert {e.source for e in delivered} == {"registry"}
    assert follower.fetched == 50  # the 20 new ones came live
    assert [e.payload["config"]["seed"] for e in delivered[50:]] == list(range(1000, 1020))


@pytest.mark.timeout(90)
def test_a_follower_joining_during_a_storm_has_no_gap_and_no_duplicate(stack: Stack) -> None:
    group = start_submitters(stack.env, stack.settings.home, 2, 400)
    c = stack.client()
    delivered: list[Envelope] = []
    try:
        group.go()
        wait_until(lambda: group.progress(100), 30, interval=0.005,
                   message="100 acknowledged submits")
        head_at_join = c.call("ping")["head_seq"]
        follower = EventFollower(stack.subscriber(live=False), registry_fetch(c),
                                 idle_probe_s=0.5)
        delivered.extend(follower.poll(0))
        group.finish(timeout=60)
    finally:
        group.kill()
    head = c.call("ping")["head_seq"]
    assert head > 400
    follow_until(follower, head, delivered)
    assert_exactly_once_in_order(delivered, head)
    assert head_at_join <= follower.fetched < head, \
        "the backlog is fetched, later events come live"


@pytest.mark.timeout(90)
def test_events_survive_a_broker_kill9_and_restart(stack: Stack) -> None:
    c = stack.client()
    # This subscriber reconnects only 5-10 s after the broker went away, so that the
    # events the registry queued for the dead broker have come through the new one
    # (and been dropped there, no one subscribing) before it is back: a certain gap.
    sock = stack.socket(zmq.SUB)
    sock.setsockopt(zmq.RECONNECT_IVL, 5000)
    sock.connect(stack.settings.bus_sub)
    sub = Subscriber(sock, BadFrameLog(service_logger("test")))
    sub.subscribe("status.registry")
    follower = EventFollower(sub, registry_fetch(c), idle_probe_s=3600)
    wait_registry_status(sub)
    assert follower.poll(0) == []  # synced (empty log): what follows comes live
    delivered: list[Envelope] = []
    for i in range(10):
        c.call("submit", {"config": {"seed": i}})
    follow_until(follower, 10, delivered)
    assert follower.fetched == 0
    registry_pid = c.call("ping")["pid"]

    stack.bus.kill9()
    for i in range(10, 20):  # committed while no broker forwards anything
        c.call("submit", {"config": {"seed": i}})
    assert follower.poll(0.2) == []
    stack.start_bus()
    probe = stack.subscriber("status.registry", live=False)

    def registry_reconnected() -> bool:
        msg = probe.recv(100)
        return msg is not None and msg.envelope.payload["counters"]["head_seq"] >= 20
    wait_until(registry_reconnected, 20, message="the registry to publish on the new broker")

    seed = [20]

    def a_live_event_after_restart() -> bool:
        c.call("submit", {"config": {"seed": seed[0]}})
        seed[0] += 1
        delivered.extend(follower.poll(0.2))
        return len(delivered) - follower.fetched > 10
    wait_until(a_live_event_after_restart, 30, interval=0.1,
               message="events to flow through the restarted broker")
    head = c.call("ping")["head_seq"]
    follow_until(follower, head, delivered)
    assert_exactly_once_in_order(delivered, head)
    assert follower.fetched >= 10  # at least the ones committed while the broker was down
    assert c.call("ping")["pid"] == registry_pid and stack.registry.alive()
