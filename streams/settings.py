"""All settings of the scorer, from `CEMI_*` environment variables (one class, one place).

An invalid setting refuses to start with the variable named (`SettingsError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PositiveMs = Annotated[int, Field(gt=0)]


class SettingsError(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))


class Settings(BaseSettings):
    """Every `CEMI_*` variable; the README's settings table documents each one."""

    model_config = SettingsConfigDict(env_prefix="CEMI_", extra="ignore", frozen=True)

    broker_url: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port,...); unset: start the embedded broker",
    )
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] = "cx"
    partitions: Annotated[int, Field(ge=1, le=256)] = 4
    replication_factor: Annotated[int, Field(ge=1, le=5)] = 1
    app_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] = "cemi"
    store: Literal["auto", "rocksdb", "memory"] = "auto"
    data_dir: Path = Path("cemi-data")
    catalog: Path | None = Field(None, description="Catalog file; unset: the packaged default")
    rolling_span_ms: PositiveMs = 3_600_000
    rolling_slice_ms: PositiveMs = 60_000
    allowed_lateness_ms: Annotated[int, Field(ge=0)] = 600_000
    idle_advance_ms: PositiveMs = 10_000
    emit_interval_ms: PositiveMs = 1_000
    max_future_ms: PositiveMs = 86_400_000
    max_event_bytes: Annotated[int, Field(ge=256, le=16 * 1024 * 1024)] = 64 * 1024
    max_units: Annotated[int, Field(ge=1, le=100_000)] = 500
    ingest_batch_events: Annotated[int, Field(ge=1, le=100_000)] = 5_000
    web_host: str = "127.0.0.1"
    web_port: Annotated[int, Field(ge=1, le=65535)] = 6066

    @field_validator("rolling_slice_ms")
    @classmethod
    def _slice_divides_span(cls, slice_ms: int, info: object) -> int:
        span = getattr(info, "data", {}).get("rolling_span_ms")
        if span is not None and span % slice_ms:
            raise ValueError(f"must divide CEMI_ROLLING_SPAN_MS ({span})")
        return slice_ms

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    @property
    def store_url(self) -> str:
        store = self.store
        if store == "auto":
            try:
                import rocksdict  # noqa: F401

                store = "rocksdb"
            except ImportError:
                store = "memory"
        return "rocksdb://" if store == "rocksdb" else "memory://"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and explicit overrides); SettingsError names the var."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = "CEMI_" + "_".join(str(p) for p in item["loc"]).upper()
            problems.append((name, str(item["msg"]).removeprefix("Value error, ")))
        raise SettingsError(problems) from None
