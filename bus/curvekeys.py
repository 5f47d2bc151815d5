"""The CURVE key files under TRAINER_HOME/keys, and a client socket's keys.

Layout (docs/BUS.md, "tcp endpoints and CURVE"), every folder 0700 and every secret
file 0600, owned by the user that runs the services:

    keys/server.key, keys/server.key_secret        the broker's pair
    keys/services.key, keys/services.key_secret    the services' client pair
    keys/workers.key, keys/workers.key_secret      the runs' pair (copied into run folders)
    keys/clients/<name>.key, <name>.key_secret     pairs made by `trainer keys create`
    keys/authorized/<name>.key                     the public keys the broker lets in

The files are pyzmq's certificate files (``zmq.auth.create_certificates``); a secret
file holds the public key too. A key file or folder that others may read is refused
(``KeyFileError``, naming the file and its mode): a secret anyone can read is no secret.
Several processes may create the same pair at once: each writes its own in a private
scratch folder and hard-links it in place, the first link wins.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import Mapping

import zmq
import zmq.auth

from core.errors import ValidationError
from core.exposure import is_tcp

SERVER, SERVICES, WORKERS = "server", "services", "workers"
RESERVED = (SERVER, SERVICES, WORKERS)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# What a run's worker is given in its environment (the dispatcher writes both files
# into the run folder; a worker started by hand on another host points them at a copy
# of a `trainer keys create` pair and of keys/server.key).
KEY_VAR = "TRAINER_BUS_CURVE_KEY"          # the client's secret key file
SERVER_VAR = "TRAINER_BUS_CURVE_SERVER"    # the broker's public key file
RUN_KEY_FILE, RUN_SERVER_FILE = "bus.key_secret", "bus-server.key"   # in a run folder


class KeyFileError(ValidationError):
    """A key file or folder that is missing, unreadable, malformed or not private."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)


def check_private(path: str, folder: bool = False) -> None:
    """Refuse ``path`` unless it is ours and neither group nor others may use it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise KeyFileError(path, f"cannot be read: {exc.strerror}") from None
    if st.st_uid != os.getuid():
        raise KeyFileError(path, f"belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & 0o077:
        want = "700" if folder else "600"
        raise KeyFileError(path, f"has mode {stat.S_IMODE(st.st_mode):o}: others may read "
                                 f"it; `chmod {want} {path}` (or make a new key)")


def load_secret(path: str) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys of a secret key file, checked private first."""
    check_private(path)
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(path, f"is not a CURVE secret key file: {exc}") from None
    if not secret:
        raise KeyFileError(path, "holds no secret key (a public .key file?)")
    return public, secret


def load_public(path: str) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(path, f"is not a CURVE key file: {exc}") from None
    return public


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValidationError("name", f"{name!r} must be 1-63 of a-z 0-9 . _ - "
                                      "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class ClientKeys:
    """What a client socket needs: its own pair and the broker's public key (z85)."""
    public: bytes
    secret: bytes
    server: bytes

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        sock.curve_serverkey = self.server


def connect(sock: zmq.Socket, endpoint: str, keys: ClientKeys | None) -> None:
    """Connect ``sock``, as a CURVE client when ``keys`` are given and the endpoint is
    tcp (ipc endpoints are never CURVE)."""
    if keys is not None and is_tcp(endpoint):
        keys.apply(sock)
    sock.connect(endpoint)


def keys_from_env(env: Mapping[str, str]) -> ClientKeys | None:
    """A worker's keys: from the files TRAINER_BUS_CURVE_KEY and
    TRAINER_BUS_CURVE_SERVER name, or None when the first is unset."""
    path = env.get(KEY_VAR, "")
    if not path:
        return None
    server = env.get(SERVER_VAR, "")
    if not server:
        raise ValidationError(SERVER_VAR, f"must name the broker's public key file when "
                                          f"{KEY_VAR} is set")
    public, secret = load_secret(path)
    return ClientKeys(public, secret, load_public(server))


def service_keys(home: str, curve: bool) -> ClientKeys | None:
    """The services' client keys where TRAINER_BUS_CURVE=1 (made at first use)."""
    return KeyStore(home).client(SERVICES) if curve else None


class KeyStore:
    """The key folder of one TRAINER_HOME."""

    def __init__(self, home: str) -> None:
        self.dir = os.path.join(home, "keys")
        self.authorized = os.path.join(self.dir, "authorized")
        self.clients = os.path.join(self.dir, "clients")

    def _folder(self, path: str) -> str:
        os.makedirs(path, mode=0o700, exist_ok=True)
        check_private(path, folder=True)
        return path

    def prepare(self) -> None:
        for path in (self.dir, self.authorized, self.clients):
            self._folder(path)

    def secret_path(self, name: str) -> str:
        folder = self.dir if name in RESERVED else self.clients
        return os.path.join(folder, f"{name}.key_secret")

    def public_path(self, name: str) -> str:
        return self.secret_path(name)[:-len("_secret")]

    def ensure(self, name: str, authorise: bool = True) -> tuple[bytes, bytes]:
        """The pair ``name`` (made if missing), with its public key authorised."""
        self.prepare()
        secret_path = self.secret_path(name)
        if not os.path.exists(secret_path):
            self._create(name, self.secret_path(name))
        public, secret = load_secret(secret_path)
        if authorise:
            self._authorise(name, secret_path)
        return public, secret

    def _create(self, name: str, secret_path: str) -> None:
        folder = os.path.dirname(secret_path)
        scratch = tempfile.mkdtemp(prefix=".new-", dir=folder)
        try:
            public_file, secret_file = zmq.auth.create_certificates(scratch, name)
            os.chmod(secret_file, 0o600)
            os.chmod(public_file, 0o600)
            try:
                os.link(secret_file, secret_path)   # the first process to link wins
            except FileExistsError:
                return
            os.replace(public_file, secret_path[:-len("_secret")])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _authorise(self, name: str, secret_path: str) -> None:
        target = os.path.join(self.authorized, f"{name}.key")
        public, _ = zmq.auth.load_certificate(secret_path)
        if os.path.exists(target) and load_public(target) == public:
            return
        fd, tmp = tempfile.mkstemp(prefix=".new-", dir=self.authorized)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"#   trainer key {name}\nmetadata\ncurve\n"
                     f"    public-key = \"{public.decode('ascii')}\"\n")
        os.replace(tmp, target)

    # --- the services' side -----------------------------------------------------------
    def server_pair(self) -> tuple[bytes, bytes]:
        return self.ensure(SERVER, authorise=False)

    def client(self, name: str) -> ClientKeys:
        public, secret = self.ensure(name)
        server, _ = self.server_pair()
        return ClientKeys(public, secret, server)

    def workers_files(self) -> tuple[str, str]:
        """(secret file, server public file) of the runs' pair, made if missing."""
        self.ensure(WORKERS)
        self.server_pair()
        return self.secret_path(WORKERS), self.public_path(SERVER)

    def issue_run_keys(self, run_dir: str) -> dict[str, str]:
        """Copy the runs' pair and the broker's public key into a run folder (its
        ``bus.key_secret`` 0600, ``bus-server.key``): the variables that name them."""
        secret, server = self.workers_files()
        out = {KEY_VAR: os.path.join(run_dir, RUN_KEY_FILE),
               SERVER_VAR: os.path.join(run_dir, RUN_SERVER_FILE)}
        for src, dst in ((secret, out[KEY_VAR]), (server, out[SERVER_VAR])):
            with open(src, "rb") as fh:
                data = fh.read()
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(data)
        return out

    # --- `trainer keys` ---------------------------------------------------------------
    def create(self, name: str) -> tuple[bytes, str]:
        """A new client pair ``name``, authorised: (public key, secret file)."""
        check_name(name)
        if name in RESERVED:
            raise ValidationError("name", f"{name!r} is the name of a key of the services")
        self.prepare()
        if os.path.exists(os.path.join(self.authorized, f"{name}.key")) \
                or os.path.exists(self.secret_path(name)):
            raise ValidationError("name", f"a key {name!r} exists already (revoke it first)")
        public, _ = self.ensure(name)
        return public, self.secret_path(name)

    def listing(self) -> list[tuple[str, str, float]]:
        """(name, public key, mtime) of every authorised key, by name."""
        self.prepare()
        out = []
        for entry in sorted(os.listdir(self.authorized)):
            if entry.endswith(".key") and not entry.startswith("."):
                path = os.path.join(self.authorized, entry)
                out.append((entry[:-4], load_public(path).decode("ascii"),
                            os.stat(path).st_mtime))
        return out

    def revoke(self, name: str) -> None:
        """The key ``name`` no longer let in (new connections), its files removed."""
        check_name(name)
        if name in RESERVED:
            raise ValidationError("name", f"{name!r} is a key of the services: it is "
                                          "authorised again at their next start")
        self.prepare()
        target = os.path.join(self.authorized, f"{name}.key")
        if not os.path.exists(target):
            raise ValidationError("name", f"no authorised key {name!r} (see trainer keys ls)")
        os.unlink(target)
        for path in (self.secret_path(name), self.public_path(name)):
            if os.path.exists(path):
                os.unlink(path)
