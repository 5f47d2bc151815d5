"""Which endpoints reach beyond this host: a tcp endpoint whose host is not a loopback
address (``127.0.0.0/8``, ``::1``, ``localhost``) listens for other hosts, ``*`` and
``0.0.0.0`` and an interface name included. Pure string logic (docs/BUS.md, "tcp
endpoints and CURVE")."""

from __future__ import annotations

TCP_PREFIX = "tcp://"
CURVE_SETTING = "TRAINER_BUS_CURVE"


def tcp_host(endpoint: str) -> str | None:
    """The host part of a ``tcp://host:port`` endpoint (brackets of IPv6 removed), or
    None when the endpoint is not tcp."""
    if not endpoint.startswith(TCP_PREFIX):
        return None
    rest = endpoint[len(TCP_PREFIX):]
    # tcp://source;host:port connects from a given source: the host is after the ';'
    rest = rest.rsplit(";", 1)[-1]
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(host: str) -> bool:
    if host in ("localhost", "::1"):
        return True
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() for p in parts)


def is_remote(endpoint: str) -> bool:
    """Whether ``endpoint`` is tcp on another address than loopback."""
    host = tcp_host(endpoint)
    return host is not None and not is_loopback(host)


def is_tcp(endpoint: str) -> bool:
    return endpoint.startswith(TCP_PREFIX)


def bus_problem(endpoint: str, curve: bool) -> str | None:
    """Why a bus endpoint may not be used as it is, or None: one that reaches beyond
    this host needs CURVE."""
    if is_remote(endpoint) and not curve:
        return (f"{endpoint!r} listens beyond this host (not a loopback address): set "
                f"{CURVE_SETTING}=1 so that only holders of an authorised key get in "
                "(docs/BUS.md, tcp endpoints and CURVE), or use ipc or tcp://127.0.0.1")
    return None


def registry_problem(endpoint: str) -> str | None:
    """The registry takes local clients only: workers on other hosts publish on the bus
    and people call the gateway, nobody elsewhere needs the registry."""
    if is_remote(endpoint):
        return (f"{endpoint!r} listens beyond this host: the registry takes only local "
                "clients (ipc or tcp://127.0.0.1); workers on other hosts publish on the "
                f"bus (TRAINER_BUS_PUB with {CURVE_SETTING}=1), users call the gateway")
    return None
