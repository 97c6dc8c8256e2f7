"""Settings: one `Settings` object, read from `TASKGATE_*` environment variables (`__` nests)."""

from __future__ import annotations

import enum
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Annotated, Literal, Self

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me-local-only-not-a-secret-0000"  # noqa: S105 (refused outside local/test)


class Environment(enum.StrEnum):
    local = "local"
    test = "test"
    staging = "staging"
    production = "production"


class DatabaseSettings(BaseModel):
    url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/taskgate"
    pool_size: int = Field(20, ge=1, le=200)
    max_overflow: int = Field(10, ge=0, le=200)
    pool_timeout_s: float = Field(10.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    statement_timeout_ms: int = Field(30_000, ge=0)
    # Connections older than this are replaced when next taken from the pool (idle timeouts of
    # proxies and firewalls). A connection found dead invalidates the whole pool instead of
    # being pinged before every use (three round trips per checkout); `pool_pre_ping` restores
    # the ping for networks that drop idle connections silently.
    pool_recycle_s: int = Field(300, ge=1)
    pool_pre_ping: bool = False
    # TLS to a managed PostgreSQL: disable | require | verify-ca | verify-full.
    sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = "disable"
    ssl_ca_file: Path | None = None
    # Prepared statements kept per connection, by asyncpg and by SQLAlchemy's driver. 0 behind
    # PgBouncer in transaction mode (a server connection serves many clients, so a statement
    # prepared on it is not the client's): every statement is then prepared anew, unnamed by
    # asyncpg and under a unique name by SQLAlchemy.
    statement_cache_size: int = Field(100, ge=0, le=10_000)
    # Long-polls wait on LISTEN, which needs a session of its own: behind PgBouncer in
    # transaction mode, a URL that reaches PostgreSQL directly (or a session-mode pool). None:
    # `url`.
    listen_url: str | None = None
    # Migrations (`taskgate migrate`, `alembic upgrade`): how long a schema change waits for a
    # table's lock before the run gives up, having changed nothing (requests queue behind a
    # waiting ALTER, so this bounds their delay), and how long one statement of a run may take.
    migration_lock_timeout_ms: int = Field(5_000, ge=0)
    migration_statement_timeout_ms: int = Field(3_600_000, ge=0)

    @model_validator(mode="after")
    def _ca_for_verification(self) -> Self:
        if self.sslmode in ("verify-ca", "verify-full") and self.ssl_ca_file is None:
            raise ValueError(f"sslmode={self.sslmode} needs ssl_ca_file")
        return self


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"  # rediss:// for TLS
    ssl_ca_file: Path | None = None
    socket_timeout_s: float = Field(2.0, gt=0)
    max_connections: int = Field(50, ge=1)


class S3Settings(BaseModel):
    endpoint_url: str | None = None  # None: AWS S3 of `region`
    region: str = "us-east-1"
    bucket: str = Field("taskgate", min_length=3, max_length=63)
    access_key_id: SecretStr | None = None  # None: the default AWS credential chain
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    verify_tls: bool = True
    ca_bundle: Path | None = None
    timeout_s: float = Field(5.0, gt=0)


JwtAlgorithm = Literal["HS256", "EdDSA", "ES256"]
_KEY_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_MIN_SECRET_BYTES = 32


# Short: a sealed secret (`v1.<kid>.<nonce>.<ciphertext>`) fits the 128 characters it is stored in.
_SEALING_KEY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,16}$"


def _check_secret(name: str, secret: SecretStr) -> None:
    if len(secret.get_secret_value().encode()) < _MIN_SECRET_BYTES:
        raise ValueError(f"TASKGATE_SECURITY__{name} must be at least {_MIN_SECRET_BYTES} bytes")


def _check_pem_key(name: str, algorithm: JwtAlgorithm, pem: SecretStr, *, private: bool) -> None:
    """Refuse a PEM key that does not parse or does not fit `algorithm` (Ed25519 / P-256)."""
    data = pem.get_secret_value().encode()
    try:
        key: object = (
            serialization.load_pem_private_key(data, password=None)
            if private or b"PRIVATE KEY" in data
            else serialization.load_pem_public_key(data)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"TASKGATE_SECURITY__{name} is not a PEM key: {exc}") from None
    if algorithm == "EdDSA":
        fits = isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey)
    else:
        fits = isinstance(
            key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey
        ) and isinstance(key.curve, ec.SECP256R1)
    if not fits:
        raise ValueError(f"TASKGATE_SECURITY__{name} is not an {algorithm} key")


class SecuritySettings(BaseModel):
    """JWT keys (one pinned algorithm per `kid`), token lifetimes, password and API key hashing."""

    model_config = ConfigDict(frozen=True)  # hashable: the parsed keys are cached per settings

    # HS256: the signing key of the current kid (>= 32 random bytes); unused for EdDSA/ES256.
    jwt_secret: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    jwt_algorithm: JwtAlgorithm = "HS256"
    # EdDSA (Ed25519) or ES256 (P-256): the PEM private key of the current kid.
    jwt_private_key: SecretStr | None = None
    jwt_key_id: str = Field("k1", pattern=_KEY_ID_PATTERN)
    # Rotation: tokens of the previous kid still verify (never signed) until it is removed.
    jwt_previous_key_id: str | None = Field(None, pattern=_KEY_ID_PATTERN)
    jwt_previous_algorithm: JwtAlgorithm | None = None  # None: the same as jwt_algorithm
    # HS256: the previous secret; EdDSA/ES256: its PEM public (or private) key.
    jwt_previous_key: SecretStr | None = None
    jwt_issuer: str = "taskgate"
    jwt_audience: str = "taskgate-api"
    access_token_ttl_s: int = Field(900, ge=60, le=900)
    refresh_token_ttl_s: int = Field(14 * 24 * 3600, ge=3600)
    # Key of the HMAC that API keys are stored under (>= 32 random bytes).
    api_key_pepper: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    # argon2id: at least 19 MiB and two passes (parallelism is 1).
    password_hash_memory_kib: int = Field(19_456, ge=19_456, le=1_048_576)
    password_hash_time_cost: int = Field(2, ge=2, le=10)
    # Hashes waiting for a free hashing thread (one per core) per API process; sign-in and
    # register past this answer 503 with Retry-After instead of queueing (0: never queue).
    password_hash_max_waiting: int = Field(32, ge=0, le=10_000)
    # Seconds a caller (API key or access token) and a member's role are remembered per process
    # (0: never). A revocation, deactivation or role change made in another process takes effect
    # within this time, hence the cap of one second.
    principal_cache_s: float = Field(1.0, ge=0, le=1.0)

    @property
    def previous_algorithm(self) -> JwtAlgorithm:
        return self.jwt_previous_algorithm or self.jwt_algorithm

    @model_validator(mode="after")
    def _usable_keys(self) -> Self:
        if self.refresh_token_ttl_s <= self.access_token_ttl_s:
            raise ValueError("refresh_token_ttl_s must be longer than access_token_ttl_s")
        if self.jwt_algorithm == "HS256":
            _check_secret("JWT_SECRET", self.jwt_secret)
        elif self.jwt_private_key is None:
            raise ValueError(f"jwt_algorithm={self.jwt_algorithm} needs jwt_private_key")
        else:
            _check_pem_key(
                "JWT_PRIVATE_KEY", self.jwt_algorithm, self.jwt_private_key, private=True
            )
        if self.jwt_previous_key_id is not None:
            if self.jwt_previous_key_id == self.jwt_key_id:
                raise ValueError("jwt_previous_key_id must differ from jwt_key_id")
            if self.jwt_previous_key is None:
                raise ValueError("jwt_previous_key_id needs jwt_previous_key")
            if self.previous_algorithm == "HS256":
                _check_secret("JWT_PREVIOUS_KEY", self.jwt_previous_key)
            else:
                _check_pem_key(
                    "JWT_PREVIOUS_KEY",
                    self.previous_algorithm,
                    self.jwt_previous_key,
                    private=False,
                )
        _check_secret("API_KEY_PEPPER", self.api_key_pepper)
        return self

    def check_deployable(self) -> None:
        """Raise `ValueError` if a placeholder secret is in use (refused outside local/test)."""
        uses_placeholder = {
            "JWT_SECRET": self.jwt_algorithm == "HS256" and self.jwt_secret,
            "JWT_PREVIOUS_KEY": self.jwt_previous_key_id is not None and self.jwt_previous_key,
            "API_KEY_PEPPER": self.api_key_pepper,
        }
        for name, secret in uses_placeholder.items():
            if isinstance(secret, SecretStr) and secret.get_secret_value() == PLACEHOLDER_SECRET:
                raise ValueError(f"TASKGATE_SECURITY__{name} must be set outside local/test")


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    # With `workers` above 1, how long a worker process may take to answer the supervisor's
    # health ping, its start included, before it is killed and replaced. uvicorn's own 5 s is
    # less than the app's imports take on a CPU-starved host: every worker was killed before it
    # could answer, and the API never came up.
    worker_healthcheck_s: int = Field(30, ge=1, le=600)
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # Peers (addresses or CIDRs) whose `X-Request-ID` is trusted. Empty: a sane id is kept from
    # any caller (it is a correlation id, not a credential); set: kept from these peers only.
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    # Strict-Transport-Security's max-age on answers to HTTPS requests (TLS at uvicorn, or
    # `X-Forwarded-Proto: https` from a proxy uvicorn trusts); 0: never sent. `hsts_always`: on
    # every answer, for a TLS proxy whose scheme does not reach the app.
    hsts_max_age_s: int = Field(31_536_000, ge=0)
    hsts_always: bool = False

    @model_validator(mode="after")
    def _hsts_always_needs_an_age(self) -> Self:
        if self.hsts_always and self.hsts_max_age_s == 0:
            raise ValueError("hsts_always needs hsts_max_age_s above 0")
        return self


class WorkerSettings(BaseModel):
    # threads: one process whose `concurrency` jobs share its event loop, so attempts that wait
    # on PostgreSQL, S3 or the network overlap; run one such process per core (or pod). prefork:
    # `concurrency` processes, one job each, for CPU-bound task types. docs/benchmarks.md has the
    # figures behind the default.
    pool: Literal["threads", "prefork", "solo"] = "threads"
    concurrency: int = Field(4, ge=1, le=256)
    # Celery task events (three broker messages per job). Flower switches them on by itself
    # while it runs (its `--enable_events`, the default); on here, they are always sent.
    task_events: bool = False
    # Broker visibility timeout: above the longest task timeout so Redis never redelivers a running job.
    visibility_timeout_s: int = Field(7 * 3600, ge=60)
    # How often kombu puts back messages of a dead worker; the default (1 h) is far too slow.
    unacked_restore_interval_s: float = Field(5.0, gt=0)
    # Warm shutdown (SIGTERM): a handler still running this long after it is stopped and its
    # task released (queued again with `task.requeued`, published at once), instead of waiting
    # out its lease after the orchestrator's SIGKILL. Keep it well inside the stop grace
    # (k8s/31-worker.yaml: 600 s; compose: 2 min). The `threads` and `solo` pools only: a
    # prefork child finishes its job, or is killed and its lease expires.
    shutdown_grace_s: float = Field(30.0, ge=0, le=3600)


class TaskSettings(BaseModel):
    # A running task's lease; the worker renews it every `heartbeat_s`. An expired lease means the
    # worker died: the scheduler puts the task back (or fails it when attempts are exhausted).
    # 10 s renewed every 3 s: a dead worker's tasks run again within about 11 s, while a live one
    # may miss two beats in a row (a heartbeat is one short UPDATE) before anything is reaped.
    lease_s: float = Field(10.0, ge=1, le=3600)
    heartbeat_s: float = Field(3.0, gt=0, le=1200)
    # A queued task dispatched this long ago and not started is published again (Redis lost it).
    redispatch_after_s: float = Field(60.0, ge=1)
    scheduler_interval_s: float = Field(1.0, gt=0, le=60)
    # Unfinished tasks of all projects together; past it submit answers 503 (each project has
    # its own cap too, `projects.max_queued_tasks`).
    max_unfinished_tasks: int = Field(1_000_000, ge=1, le=100_000_000)
    scheduler_batch: int = Field(500, ge=1, le=10_000)
    retry_base_s: float = Field(2.0, ge=0)
    retry_cap_s: float = Field(3600.0, ge=0)
    max_timeout_s: int = Field(6 * 3600, ge=1)
    max_attempts_cap: int = Field(25, ge=1)
    max_delay_s: int = Field(30 * 24 * 3600, ge=0)  # how far ahead `run_at` may be
    max_input_bytes: int = Field(262_144, ge=1024)
    inline_result_bytes: int = Field(65_536, ge=1024)
    # Stop publishing for this long after a broker failure; the scheduler dispatches meanwhile.
    publish_breaker_s: float = Field(5.0, ge=0)
    # When a queue held at least `dispatch_batch_backlog` jobs at a process's last push (the
    # workers are busy), that process puts up to `dispatch_batch` tasks in one job: one broker
    # message, and one lease and one finish statement, serve them all. 1: a job per task always.
    dispatch_batch: int = Field(8, ge=1, le=64)
    dispatch_batch_backlog: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _heartbeat_inside_lease(self) -> Self:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError("heartbeat_s must be shorter than lease_s")
        return self


class WebhookSettings(BaseModel):
    # SSRF: targets must be public addresses unless these allow more. `allow_private_targets`
    # lifts the address check (not the scheme, credential and obfuscation checks);
    # `allow_loopback` allows 127.0.0.0/8 and ::1 only (what `taskgate dev` turns on).
    allow_private_targets: bool = False
    allow_loopback: bool = False
    # Cloud instance-metadata addresses (169.254.169.254 and the like) stay refused even with
    # `allow_private_targets`: a webhook there hands out the host's credentials. One listed here
    # is allowed where `allow_private_targets` is on.
    allowed_metadata_addresses: list[IPv4Address | IPv6Address] = Field(default_factory=list)
    # One attempt, from DNS resolution to the last byte read, never takes longer than this.
    timeout_s: float = Field(10.0, gt=0, le=60)
    response_max_bytes: int = Field(65_536, ge=1024, le=1_048_576)
    # Delays before each retry; a delivery that fails once more is `failed`.
    retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        min_length=0,
        max_length=20,
    )
    # After `rotate-secret`, the old secret keeps signing (a second signature) this long.
    secret_grace_s: float = Field(86_400.0, ge=0, le=30 * 86_400)
    # Endpoints' signing secrets are stored sealed (AES-256-GCM) under this key (>= 32 random
    # bytes), named by `secret_key_id`. Rotation: the previous key still opens what it sealed
    # until `taskgate webhooks reseal` has sealed everything under the current one.
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    secret_key_id: str = Field("k1", pattern=_SEALING_KEY_ID_PATTERN)
    previous_secret_key: SecretStr | None = None
    previous_secret_key_id: str | None = Field(None, pattern=_SEALING_KEY_ID_PATTERN)
    # Deliveries in flight per endpoint (1 while the endpoint is failing).
    endpoint_concurrency: int = Field(4, ge=1, le=64)
    # An endpoint whose deliveries have failed without a success for this long is disabled.
    disable_after_s: float = Field(5 * 86_400.0, ge=60)
    # A claimed delivery whose worker died is attempted again `timeout_s + lease_grace_s` later.
    lease_grace_s: float = Field(10.0, ge=0.5, le=600)
    # A published delivery not started this long ago is published again if its queue is empty.
    redispatch_after_s: float = Field(30.0, ge=1)
    max_endpoints_per_project: int = Field(20, ge=1, le=1000)

    @model_validator(mode="after")
    def _usable_sealing_keys(self) -> Self:
        if len(self.secret_key.get_secret_value().encode()) < _MIN_SECRET_BYTES:
            raise ValueError(
                f"TASKGATE_WEBHOOKS__SECRET_KEY must be at least {_MIN_SECRET_BYTES} bytes"
            )
        if (self.previous_secret_key is None) != (self.previous_secret_key_id is None):
            raise ValueError("previous_secret_key and previous_secret_key_id go together")
        if self.previous_secret_key_id == self.secret_key_id:
            raise ValueError("previous_secret_key_id must differ from secret_key_id")
        return self

    def check_deployable(self) -> None:
        """Raise `ValueError` if the placeholder sealing key is in use (outside local/test)."""
        if self.secret_key.get_secret_value() == PLACEHOLDER_SECRET:
            raise ValueError("TASKGATE_WEBHOOKS__SECRET_KEY must be set outside local/test")

    @field_validator("retry_schedule_s")
    @classmethod
    def _sane_delays(cls, value: list[float]) -> list[float]:
        if any(not 0 <= delay <= 7 * 86_400 for delay in value):
            raise ValueError("retry delays must be between 0 and 604800 seconds")
        return value


_MIB = 1024 * 1024
_GIB = 1024 * _MIB


class FilesSettings(BaseModel):
    """Uploads, presigned URLs, multipart sizes and how long results and outputs are kept."""

    # Largest size a presigned PUT may declare (one S3 PUT takes at most 5 GiB).
    max_upload_bytes: int = Field(5 * _GIB, ge=1, le=5 * _GIB)
    # Largest `files:upload` body file, streamed through the API to S3.
    max_direct_upload_bytes: int = Field(10 * _MIB, ge=1)
    upload_url_ttl_s: int = Field(300, ge=1, le=300)
    download_url_ttl_s: int = Field(900, ge=1, le=900)
    # Presigned URLs are signed for this host when clients reach S3 by another address than
    # the servers do (compose: http://localhost:9000); None: `s3.endpoint_url`.
    public_endpoint_url: str | None = None
    # Multipart part size for outputs and direct uploads (S3 needs >= 5 MiB but for the last).
    part_size_bytes: int = Field(8 * _MIB, ge=5 * _MIB, le=512 * _MIB)
    # Retention: a succeeded task's result, and files tasks wrote, are deleted after this long.
    result_retention_days: float = Field(30.0, gt=0)
    output_retention_days: float = Field(30.0, gt=0)
    # Uploaded files are kept until deleted unless this is set.
    upload_retention_days: float | None = Field(None, gt=0)
    # A presigned upload never completed is removed after this long.
    pending_upload_ttl_s: int = Field(24 * 3600, ge=3600)
    retention_interval_s: float = Field(300.0, gt=0)
    retention_batch: int = Field(500, ge=1, le=1000)

    @model_validator(mode="after")
    def _direct_within_max(self) -> Self:
        if self.max_direct_upload_bytes > self.max_upload_bytes:
            raise ValueError("max_direct_upload_bytes must not exceed max_upload_bytes")
        return self


# Bounds of a project's limits: the deployment's defaults below and each project's own
# `settings` (`app.projects.settings.ProjectSettings`) alike.
QueuedTasksLimit = Annotated[int, Field(ge=1, le=1_000_000)]
RunningTasksLimit = Annotated[int, Field(ge=1, le=100_000)]
PerMinuteLimit = Annotated[int, Field(ge=1, le=1_000_000)]


class ProjectDefaults(BaseModel):
    """What a project's limits are where its own `settings` leave a field out. Generous, so a
    single-tenant deployment never meets them; lower them to share workers between tenants."""

    max_queued_tasks: QueuedTasksLimit = 100_000
    max_running_tasks: RunningTasksLimit = 1_000
    submit_rate_per_minute: PerMinuteLimit = 60_000
    read_rate_per_minute: PerMinuteLimit = 120_000


class RateLimitSettings(BaseModel):
    """Rate limits (`core/ratelimit.py`). Submits and other requests of a caller are limited by
    the project's `submit_rate_per_minute` / `read_rate_per_minute`; sign-in and registration by
    the client's address and the email they name, below."""

    enabled: bool = True
    # Redis out of reach: True admits requests unchecked, False refuses them with a 503.
    fail_open: bool = True
    timeout_s: float = Field(0.25, gt=0, le=5)  # a check slower than this counts as a failure
    breaker_s: float = Field(5.0, ge=0, le=300)  # Redis is skipped this long after a failure
    batch: int = Field(256, ge=1, le=4096)  # the most checks sent in one script run
    sign_in_per_ip_per_minute: int = Field(120, ge=1, le=1_000_000)
    sign_in_per_email_per_minute: int = Field(10, ge=1, le=1_000_000)
    register_per_ip_per_minute: int = Field(30, ge=1, le=1_000_000)


class CacheSettings(BaseModel):
    """The read-through caches in Redis: finished tasks (`tasks/cache.py`), project rows
    (`projects/cache.py`)."""

    enabled: bool = True
    task_ttl_s: int = Field(30, ge=1, le=3600)  # how long a finished task is kept
    # How long a project row is kept: a read racing a change may keep the older row this long.
    project_ttl_s: int = Field(10, ge=1, le=300)
    breaker_s: float = Field(5.0, ge=0, le=300)  # Redis is skipped this long after a failure


class HealthSettings(BaseModel):
    check_timeout_s: float = Field(2.0, gt=0, le=30)


class MetricsSettings(BaseModel):
    """Where the processes of one host write their metrics (prometheus_client's multiprocess
    mode, `core/multiprocess.py`) and how long a scrape waits for the broker."""

    # Shared by `taskgate api`, `worker` and `scheduler` on one host: the API's `/metrics` sums
    # them all. None: `taskgate-metrics-<uid>` in the system's temporary directory.
    dir: Path | None = None
    # The queue depths are read from the broker at scrape time; past this they are left out.
    queue_depth_timeout_s: float = Field(0.5, gt=0, le=10)
    # A worker on a host (pod) without an API process serves its host's metrics on this port.
    worker_port: int | None = Field(None, ge=1, le=65535)
    worker_host: str = "127.0.0.1"


class TracingSettings(BaseModel):
    """OpenTelemetry traces (`core/tracing.py`): exported over OTLP/HTTP when `otlp_endpoint` is
    set, off (no SDK loaded, nothing added to a request or a job) when it is not."""

    # The collector's OTLP/HTTP base URL (`http://collector:4318`): spans go to `<url>/v1/traces`.
    otlp_endpoint: str | None = None
    # Each process reports as `<service_name>-api`, `-worker` or `-scheduler`.
    service_name: str = Field("taskgate", min_length=1, max_length=100)
    # The share of traces started here that are recorded; a request that arrives with a sampled
    # `traceparent`, and every job it causes, follows its caller's decision.
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # Sent with every export, `key=value` pairs separated by commas (a collector's API key).
    headers: SecretStr | None = None

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("otlp_endpoint must be an http:// or https:// URL")
        return value.rstrip("/") if value is not None else None

    @field_validator("headers")
    @classmethod
    def _pairs(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for pair in value.get_secret_value().split(","):
                key, sep, _ = pair.partition("=")
                if not sep or not key.strip():
                    raise ValueError("headers must be key=value pairs separated by commas")
        return value

    @property
    def enabled(self) -> bool:
        return self.otlp_endpoint is not None

    def header_pairs(self) -> dict[str, str]:
        if self.headers is None:
            return {}
        pairs = (pair.partition("=") for pair in self.headers.get_secret_value().split(","))
        return {key.strip(): value.strip() for key, _, value in pairs}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TASKGATE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    env: Environment = Environment.local
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    tasks: TaskSettings = Field(default_factory=TaskSettings)
    files: FilesSettings = Field(default_factory=FilesSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    projects: ProjectDefaults = Field(default_factory=ProjectDefaults)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @model_validator(mode="after")
    def _broker_outlasts_tasks(self) -> Self:
        if self.worker.visibility_timeout_s <= self.tasks.max_timeout_s:
            raise ValueError("worker.visibility_timeout_s must exceed tasks.max_timeout_s")
        return self

    @model_validator(mode="after")
    def _no_placeholders_in_production(self) -> Self:
        if self.env not in (Environment.local, Environment.test):
            self.security.check_deployable()
            self.webhooks.check_deployable()
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
