"""Settings, read from the environment (prefix GRIDFLOW_, nested with __) when a process starts.

Nothing reads settings at import time: `Settings()` is built in main() or create_app().
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DbSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is the SQLite file <data_dir>/gridflow.db. "
        "PostgreSQL: postgresql+asyncpg://user:pass@host/db",
    )
    echo: bool = False
    pool_size: int = Field(
        default=20,
        ge=1,
        description="PostgreSQL connections per process for the ORM, kept open: a request "
        "waits for a free one (503 overloaded after 10 s) rather than opening a short-lived "
        "extra one, which costs both processes more than the request itself. Intake's "
        "one-statement writes use up to half as many more, opened when first needed.",
    )


class BusSettings(BaseModel):
    kind: Literal["embedded", "kafka"] = Field(
        default="embedded",
        description="embedded: the durable outbox table is the log, read in this process "
        "(one process only). kafka: the outbox relay publishes to Apache Kafka.",
    )
    poll_interval_s: float = Field(
        default=0.5, gt=0, description="Longest wait before the log or the outbox is re-read."
    )
    outbox_keep_s: int = Field(
        default=24 * 3600,
        ge=60,
        description="Outbox rows are deleted once done (published, or consumed by every group) "
        "and at least this old.",
    )
    outbox_prune_interval_s: float = Field(
        default=600, gt=0, description="How often the engine prunes the outbox."
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="Most intake messages the engine applies as one unit of work.",
    )


class KafkaSettings(BaseModel):
    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="host:port[,host:port]")
    client_id: str = "gridflow"
    topic_prefix: str = Field(
        default="", description="Prepended to every topic name (separate environments)."
    )
    partitions: int = Field(default=12, ge=1, description="Partitions per topic at kafka init.")
    replication_factor: int = Field(default=1, ge=1)
    dispatcher_group: str = "gridflow-dispatcher"
    relay_batch: int = Field(default=500, ge=1, le=10_000)
    request_timeout_ms: int = Field(default=15_000, ge=1000)
    max_attempts: int = Field(
        default=3, ge=1, description="Tries before a failing message goes to the dead-letter topic."
    )


class CalendarSettings(BaseModel):
    """The working-hours calendar of policies that do not run 24/7."""

    national: Literal["cn", "none"] = Field(
        default="cn",
        description="the national calendar of public holidays and make-up working days: cn = "
        "mainland China's, from the State Council's yearly notices (the chinese-calendar "
        "library; a year it does not know yet is reported by `gridflow doctor` and logged at "
        "start); none = only the holidays and workdays listed here",
    )
    timezone: str = Field(default="Asia/Shanghai", description="the city's time zone")
    periods: list[str] = Field(
        default=["09:00-12:00", "13:30-18:00"], description="working periods of a working day"
    )
    weekdays: list[int] = Field(default=[0, 1, 2, 3, 4], description="working weekdays, Monday = 0")
    holidays: list[date] = Field(
        default=[],
        description="days off of the city's own, on top of the national calendar's; a day "
        "listed here is off even where the national calendar makes it a make-up working day",
    )
    workdays: list[date] = Field(
        default=[],
        description="working days of the city's own (make-up days, 调休), on top of the "
        "national calendar's; a day listed here is worked even where the national calendar "
        "(or `holidays`) gives it off",
    )


class SlaSettings(BaseModel):
    sweep_interval_s: float = Field(
        default=1.0, gt=0, description="How often due timers are swept."
    )
    redispatch_retry_s: int = Field(
        default=60, gt=0, description="Retry delay when no worker can be offered a case."
    )
    feedback_window_s: int = Field(
        default=72 * 3600,
        gt=0,
        description="A resolved case with no resident feedback closes after this long.",
    )
    arrive_radius_m: float = Field(
        default=200.0, gt=0, description="A worker may mark arrival only within this distance."
    )
    calendar: CalendarSettings = CalendarSettings()
    warn_at: float = Field(
        default=0.8,
        ge=0,
        lt=1,
        description="Warn (SlaWarning) when this share of an on-site or close clock has passed; "
        "0 turns warnings off.",
    )
    location_fresh_s: int = Field(
        default=900,
        gt=0,
        description="A worker's reported location ranks them by distance for this long.",
    )


class AuthSettings(BaseModel):
    secret: SecretStr | None = Field(
        default=None,
        description="HS256 signing secret. Unset in development: generated once into "
        "<data_dir>/jwt-secret. Required outside development.",
    )
    audit_key: SecretStr | None = Field(
        default=None,
        description="Key of the tamper-evident case history (HMAC-SHA256). Unset: derived from "
        "the signing secret; set it on its own so that secret can be rotated.",
    )
    device_master_key: SecretStr | None = Field(
        default=None,
        description="Key every device's signing secret is derived from. Unset: derived from the "
        "signing secret; set it on its own so that secret can be rotated.",
    )
    issuer: str = "gridflow"
    audience: str = "gridflow"
    jwks_url: str | None = Field(
        default=None,
        description="The city identity provider's JWKS; RS256 and ES256 tokens are checked "
        "against it (HS256 tokens against the secret).",
    )
    jwks_issuer: str | None = Field(default=None, description="iss of the provider's tokens")
    jwks_audience: str | None = Field(default=None, description="aud of the provider's tokens")
    role_claim: str = Field(default="role", description="the claim that carries the role")
    scope_claim: str = Field(
        default="gridflow_scope",
        min_length=1,
        description="The claim of the provider's tokens that limits an operator or admin to a "
        "district, street, community or department (`street:330106001`, `department:roads`); "
        "absent: the whole city. Not OAuth's `scope`, which lists other things. gridflow's own "
        "tokens always use `gridflow_scope`.",
    )
    scope_required: bool = Field(
        default=False,
        description="Refuse (401) a provider's operator or admin token without the scope "
        "claim; a city-wide one then carries `city`. Turn on once the provider sends the claim: "
        "a forgotten or renamed claim then fails closed instead of reaching the whole city.",
    )
    token_ttl_s: int = Field(
        default=12 * 3600,
        gt=0,
        description="Lifetime of the tokens gridflow signs; renew one before it expires with "
        "POST /v1/token/refresh.",
    )
    session_max_s: int = Field(
        default=30 * 24 * 3600,
        gt=0,
        description="A token is renewed up to this long after it was first issued; then its "
        "holder signs in again.",
    )
    ticket_ttl_s: int = Field(
        default=30, ge=5, le=300, description="Lifetime of a stream ticket (POST /v1/tickets)."
    )


class AuditSettings(BaseModel):
    """Signed checkpoints of every case's chain head (app/cases/checkpoints.py)."""

    checkpoint_interval_s: float = Field(
        default=3600,
        ge=0,
        description="How often a dispatcher (or `gridflow serve`) takes a signed checkpoint of "
        "every case's chain head; one process takes each. 0: only on demand "
        "(`gridflow audit checkpoint`).",
    )
    checkpoint_keep_leaves: int = Field(
        default=24,
        ge=2,
        description="The newest checkpoints whose leaves (one per case: id, last event, head "
        "hash) are kept; older ones keep their root and signature. About 62 bytes a case "
        "each.",
    )


class IntakeSettings(BaseModel):
    max_photos: int = Field(default=9, ge=0)
    max_photo_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)


class PrivacySettings(BaseModel):
    """Residents' personal data: how long it is kept, how coarse a kept location is, and the
    log of staff reads of it (app/privacy/)."""

    retain_personal_days: float = Field(
        default=180,
        ge=0,
        description="Days after a case closes that its residents' personal data is kept: then "
        "the retention job removes their id, description, address, photos and feedback "
        "comments and coarsens the report's location (figures and the case history stay).",
    )
    coarsen_m: float = Field(
        default=100,
        ge=10,
        le=10_000,
        description="A location past retention (or erased on request) is moved to the centre "
        "of its cell in a grid of squares this many metres wide.",
    )
    retention_interval_s: float = Field(
        default=3600, gt=0, description="How often the engine runs the retention job."
    )
    retention_batch: int = Field(
        default=100, ge=1, le=1000, description="Reports the retention job clears per transaction."
    )
    access_log_keep_days: float = Field(
        default=3 * 365,
        ge=1,
        description="Days the log of staff reads of personal data is kept (the retention job "
        "deletes older entries).",
    )
    access_log_repeat_s: float = Field(
        default=300,
        ge=0,
        description="A read repeated by the same person, of the same thing, within this many "
        "seconds is recorded once (a worker's app polls its tasks); 0 records every read.",
    )
    access_log_flush_s: float = Field(
        default=0.5, gt=0, description="How often recorded reads are written to the database."
    )
    access_log_backlog: int = Field(
        default=10_000,
        ge=100,
        description="Reads waiting to be written, at most: beyond it (the database away) staff "
        "reads of personal data are refused with 503 rather than served unrecorded.",
    )


class GeoSettings(BaseModel):
    snap_m: float = Field(
        default=30.0,
        ge=0,
        le=1000,
        description="A point outside every grid but this close (metres) to one belongs to the "
        "nearest; farther out it is outside the service area. 0 turns snapping off.",
    )
    unit_code_digits: list[Literal[14, 15]] = Field(
        default=[14],
        description="Accepted unit-grid code lengths: 14 (CJ/T 213) and, for cities with "
        "3-digit grid numbers, 15.",
    )
    min_area_m2: float = Field(
        default=1.0,
        ge=0,
        description="Overlaps and gaps smaller than this (square metres) are tolerated on import.",
    )
    reload_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often each process checks for a newly imported grid set and swaps it in.",
    )
    max_import_bytes: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description="Largest GeoJSON body PUT /v1/admin/grids takes.",
    )


class HttpSettings(BaseModel):
    cors_origins: list[str] = Field(
        default=[],
        description="Browser origins allowed to call the API (e.g. the operations centre's web "
        "app). Empty: no cross-origin access.",
    )
    hsts: bool = Field(
        default=False, description="Send Strict-Transport-Security (behind TLS termination)."
    )


class MetricsSettings(BaseModel):
    """Prometheus metrics: counts and timings only, never a case's contents or a person."""

    enabled: bool = Field(
        default=True,
        description="Serve GET /metrics on the API's port, and the dispatcher's own listener.",
    )
    dispatcher_host: str = Field(
        default="127.0.0.1",
        description="Address the dispatcher's metrics listener binds (0.0.0.0 in a container).",
    )
    dispatcher_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of `gridflow dispatcher`'s metrics listener; 0: none.",
    )
    gauge_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="The figures read from the database at a scrape (open and overdue cases, "
        "outbox backlog) are reused for this long.",
    )


class Bucket(BaseModel):
    per_minute: float = Field(gt=0, description="tokens added per minute")
    burst: int = Field(gt=0, description="the most tokens a bucket holds")


class LogSettings(BaseModel):
    format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="json: one JSON object a line; text: lines for people; auto: text on a "
        "terminal in development, JSON otherwise",
    )
    level: Literal["debug", "info", "warning", "error"] = "info"


class TracingSettings(BaseModel):
    """OpenTelemetry traces across API -> Kafka -> dispatcher: off unless enabled."""

    enabled: bool = Field(default=False, description="record and export traces")
    otlp_endpoint: str | None = Field(
        default="http://127.0.0.1:4318/v1/traces",
        description="where spans go (OTLP over HTTP, protobuf); none: nowhere (tests)",
    )
    service_name: str = "gridflow"
    sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="share of traces started here that are kept"
    )


class LimitSettings(BaseModel):
    enabled: bool = True
    per_address: Bucket = Field(
        default=Bucket(per_minute=1200, burst=300),
        description="Every request from one client address.",
    )
    reports: Bucket = Field(
        default=Bucket(per_minute=10, burst=10), description="Reports and feedback per resident."
    )
    worker_actions: Bucket = Field(
        default=Bucket(per_minute=120, burst=30), description="Task actions per worker."
    )
    alerts: Bucket = Field(
        default=Bucket(per_minute=600, burst=120),
        description="Alerts per sensor: their own budget, apart from people's.",
    )
    reads: Bucket = Field(
        default=Bucket(per_minute=600, burst=120), description="Reads per principal."
    )
    operations: Bucket = Field(
        default=Bucket(per_minute=120, burst=30), description="Operators' case actions."
    )
    admin: Bucket = Field(default=Bucket(per_minute=30, burst=10), description="Per admin.")
    trust_forwarded_for: bool = Field(
        default=False,
        description="Take the client address from X-Forwarded-For (only behind a proxy that "
        "sets it).",
    )
    store: Literal["auto", "process", "database"] = Field(
        default="auto",
        description="Where the buckets live. process: in each process (N API processes allow "
        "N budgets). database: one bucket per key in PostgreSQL for every process, on the "
        "database's clock. auto: database on PostgreSQL, process on SQLite.",
    )
    store_timeout_s: float = Field(
        default=1.0,
        gt=0,
        le=5,
        description="Longest wait for the shared store on one request; past it (or with the "
        "store unreachable) the request is limited by this process's buckets instead, and so "
        "are the next ones until the slow statement is answered. Generous on purpose: a busy "
        "process answers slowly too, and should not be taken for a slow store.",
    )
    store_retry_s: float = Field(
        default=5,
        gt=0,
        description="After the shared store could not be reached or failed, how long this "
        "process's buckets stand in before it is asked again (a slow one is asked again as "
        "soon as the statement that took too long is answered).",
    )
    store_pool_size: int = Field(
        default=2,
        ge=1,
        le=50,
        description="PostgreSQL connections per API process for the shared buckets, apart "
        "from the requests' (one carries the takes, one statement at a time; the other gives "
        "tokens back and prunes).",
    )
    prune_interval_s: float = Field(
        default=60,
        gt=0,
        description="How often each API process deletes the shared buckets that are full "
        "again (a missing bucket is a full one).",
    )

    def shared(self, database_url: str) -> bool:
        """Whether the buckets live in the database: `store`, with auto resolved by the
        database. The shared store is PostgreSQL's: on SQLite (one process) it is refused."""
        sqlite = database_url.startswith("sqlite")
        if self.enabled and self.store == "database" and sqlite:
            raise ValueError("GRIDFLOW_LIMITS__STORE=database needs PostgreSQL")
        return self.enabled and self.store != "process" and not sqlite


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GRIDFLOW_", env_nested_delimiter="__", extra="ignore"
    )

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")
    run_engine: bool = Field(
        default=True,
        description="Run the dispatcher and SLA clock inside the API process (embedded default).",
    )
    seed_demo_city: bool = Field(
        default=True, description="Load the bundled demo city into an empty database on start."
    )
    auto_migrate: bool = Field(
        default=True,
        description="Apply migrations and seed data on start (embedded default). Production "
        "runs `gridflow db upgrade` as a separate job and sets this to false.",
    )
    kafka_auto_create_topics: bool = Field(
        default=True, description="Create missing topics on start (see `gridflow kafka init`)."
    )
    run_relay: bool = Field(
        default=True,
        description="With the Kafka bus, publish the outbox from this process (when the engine "
        "runs here too).",
    )
    gc_freeze: bool = Field(
        default=True,
        description="In the long-running commands, freeze what survives each full garbage "
        "collection so that the next one walks only newer objects (app/platform/collector.py).",
    )
    db: DbSettings = DbSettings()
    bus: BusSettings = BusSettings()
    kafka: KafkaSettings = KafkaSettings()
    sla: SlaSettings = SlaSettings()
    auth: AuthSettings = AuthSettings()
    audit: AuditSettings = AuditSettings()
    intake: IntakeSettings = IntakeSettings()
    privacy: PrivacySettings = PrivacySettings()
    geo: GeoSettings = GeoSettings()
    http: HttpSettings = HttpSettings()
    limits: LimitSettings = LimitSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()

    @model_validator(mode="after")
    def _limits_fit_the_database(self) -> Settings:
        self.limits.shared(self.database_url)  # store=database on SQLite is refused here
        return self

    @property
    def database_url(self) -> str:
        return self.db.url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'gridflow.db'}"

    @property
    def photo_dir(self) -> Path:
        return self.data_dir / "photos"

    def audit_key(self) -> bytes:
        """The key case events are sealed with (see app/cases/audit.py)."""
        return self._key(self.auth.audit_key, "GRIDFLOW_AUTH__AUDIT_KEY", b"gridflow audit chain")

    def device_master_key(self) -> bytes:
        """The key device secrets are derived from (see app/devices/keys.py)."""
        return self._key(
            self.auth.device_master_key, "GRIDFLOW_AUTH__DEVICE_MASTER_KEY", b"gridflow devices"
        )

    def _key(self, explicit: SecretStr | None, name: str, label: bytes) -> bytes:
        if explicit is not None:
            value = explicit.get_secret_value()
            if len(value) < 32:
                raise ValueError(f"{name} must be at least 32 characters")
            return value.encode()
        derived = hmac.new(self.jwt_secret().encode(), label, hashlib.sha256)
        return derived.hexdigest().encode()

    def jwt_secret(self) -> str:
        """The signing secret; in development, created once under data_dir and reused."""
        if self.auth.secret is not None:
            value = self.auth.secret.get_secret_value()
            if len(value) < 32:
                raise ValueError("GRIDFLOW_AUTH__SECRET must be at least 32 characters")
            return value
        if self.env == "production":
            raise ValueError("GRIDFLOW_AUTH__SECRET must be set outside development")
        path = self.data_dir / "jwt-secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()
