"""Settings, read from the environment (prefix GRIDFLOW_, nested with __) when a process starts.

Nothing reads settings at import time: `Settings()` is built in main() or create_app().
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DbSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is the SQLite file <data_dir>/gridflow.db. "
        "PostgreSQL: postgresql+asyncpg://user:pass@host/db",
    )
    echo: bool = False
    pool_size: int = 10


class BusSettings(BaseModel):
    kind: Literal["embedded"] = Field(
        default="embedded",
        description="embedded: the durable outbox table is the log, read in this process.",
    )
    poll_interval_s: float = Field(
        default=0.5, gt=0, description="Longest wait before a consumer re-reads the log."
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


class AuthSettings(BaseModel):
    secret: SecretStr | None = Field(
        default=None,
        description="HS256 signing secret. Unset in development: generated once into "
        "<data_dir>/jwt-secret. Required outside development.",
    )
    issuer: str = "gridflow"
    audience: str = "gridflow"
    token_ttl_s: int = Field(default=30 * 24 * 3600, gt=0)


class IntakeSettings(BaseModel):
    max_photos: int = Field(default=9, ge=0)
    max_photo_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)


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
    db: DbSettings = DbSettings()
    bus: BusSettings = BusSettings()
    sla: SlaSettings = SlaSettings()
    auth: AuthSettings = AuthSettings()
    intake: IntakeSettings = IntakeSettings()

    @property
    def database_url(self) -> str:
        return self.db.url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'gridflow.db'}"

    @property
    def photo_dir(self) -> Path:
        return self.data_dir / "photos"

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
