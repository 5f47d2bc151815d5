"""Endpoint helpers: ipc socket folders that only the owner can enter, and binding a
socket that takes messages from peers with a size limit."""

from __future__ import annotations

import os

import zmq

from bus.codec import MAX_FRAME_BYTES, MAX_TOPIC_BYTES

IPC_PREFIX = "ipc://"
# libzmq drops a peer's connection when one frame of a message is larger than this,
# before the bytes are buffered: a 2 GB frame never reaches the codec's check.
MAX_MESSAGE_BYTES = MAX_FRAME_BYTES + MAX_TOPIC_BYTES + 1024


def ipc_path(endpoint: str) -> str | None:
    return endpoint[len(IPC_PREFIX):] if endpoint.startswith(IPC_PREFIX) else None


def prepare(endpoint: str, home: str = "") -> bool:
    """Make the folder of an ipc endpoint private (mode 0700): create it so, or tighten
    it if it exists inside ``home`` ($TRAINER_HOME). A folder elsewhere that already
    exists (/tmp, a home directory) is left as it is. Returns whether the folder is
    private; tcp and abstract (``ipc://@name``) endpoints have none and give True."""
    path = ipc_path(endpoint)
    if path is None or path.startswith("@"):
        return True
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
        return True
    inside = bool(home) and os.path.realpath(folder).startswith(
        os.path.realpath(home).rstrip(os.sep) + os.sep)
    if inside and os.stat(folder).st_uid == os.getuid():
        os.chmod(folder, 0o700)
    return os.stat(folder).st_mode & 0o077 == 0


def bind(sock: zmq.Socket, endpoint: str, home: str = "") -> bool:
    """Bind ``sock`` for peers: its ipc folder prepared (see ``prepare``) and frames
    over MAX_MESSAGE_BYTES refused. Returns whether the ipc folder is private."""
    private = prepare(endpoint, home)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    sock.bind(endpoint)
    return private
