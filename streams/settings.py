"""All settings of the scorer, from `CEMI_*` environment variables (one class, one place).

An invalid setting refuses to start with the variable named (`SettingsError`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

PositiveMs = Annotated[int, Field(gt=0)]
OutputFormat = Literal["avro", "json"]
LogFormat = Literal["text", "json"]
DAY_MS = 86_400_000
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
MIN_HMAC_KEY_BYTES = 16


class SettingsError(ValueError):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems))


class Settings(BaseSettings):
    """Every `CEMI_*` variable; the README's settings table documents each one."""

    model_config = SettingsConfigDict(env_prefix="CEMI_", extra="ignore", frozen=True)

    broker_url: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port,... or kafka://host:port;...); unset: "
        "start the embedded broker",
    )
    # The embedded broker's work-arounds (streams/worker/kafka_compat.py); unset: on exactly
    # when the embedded broker is used (no CEMI_BROKER_URL). `cemi broker` prints `...=true`.
    broker_workarounds: bool | None = None
    # what the output topics carry: Avro (single-object, or Confluent-framed with a registry)
    # or one UTF-8 JSON object per record, with the Avro schema's field names
    output_format: OutputFormat = "avro"
    # compacted output topics: cleanup.policy=compact,delete with this retention; a final
    # window whose end is this far behind the watermark has its keys tombstoned
    output_retention_days: Annotated[int, Field(ge=1, le=36_500)] = 400
    log_format: LogFormat = "text"
    # test hook (streams/worker/faults.py): the worker kills itself at this point; unset: never
    fault_at: Literal["emit:alert", "emit:late", "emit:dead", "ack:applied"] | None = None
    fault_pause_ms: Annotated[int, Field(ge=0, le=600_000)] = 5_000
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
    # the ingest in a child process (a core of its own); false: in the worker's event loop
    ingest_process: bool = True
    web_host: str = "127.0.0.1"
    web_port: Annotated[int, Field(ge=1, le=65535)] = 6066
    # HTTP API (streams/http/api.py): the bearer token of the write endpoints (and of the read
    # endpoints with CEMI_API_READ_AUTH), the largest request body accepted
    api_token: Annotated[SecretStr | None, Field(min_length=16)] = None
    api_read_auth: bool = False
    api_max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    # Confluent schema registry (streams/wire/registry.py); unset: single-object Avro
    schema_registry_url: Annotated[str | None, Field(pattern=r"^https?://[^\s/]+")] = None

    # Kafka security (streams/kafka_security.py turns these into client arguments).
    # Secrets are SecretStr (never printed) from the environment or from a file.
    security_protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    # Pseudonymisation of customer_ref (keyed HMAC-SHA256) where it could leave the ingest.
    customer_ref_hmac_key: SecretStr | None = None
    customer_ref_hmac_key_file: Path | None = None

    _sasl_secret: SecretStr | None = PrivateAttr(None)
    _hmac_key: SecretStr | None = PrivateAttr(None)

    @field_validator("broker_url")
    @classmethod
    def _bootstrap_servers(cls, url: str | None) -> str | None:
        """`host:port[,host:port]` or Faust's `kafka://host:port[;host:port]`, as the
        `host:port,host:port` aiokafka takes."""
        if url is None or not url.strip():
            return None
        servers = []
        for part in re.split(r"[;,]", url.strip()):
            scheme, sep, server = part.strip().rpartition("://")
            if sep and scheme != "kafka":
                raise ValueError(f"unknown scheme {scheme!r}: use kafka://host:port or host:port")
            servers.append(server.rstrip("/"))
        for server in servers:
            found = _HOST_PORT.match(server)
            if found is None or not 0 < int(found.group(2)) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @property
    def workarounds(self) -> bool:
        """Whether the embedded broker's work-arounds are on (see `broker_workarounds`)."""
        if self.broker_workarounds is not None:
            return self.broker_workarounds
        return self.broker_url is None

    @property
    def max_units_per_partition(self) -> int:
        """The unit cap of one envelope partition: its share of `max_units` (a unit's
        partition is fixed by its code, crc32 % partitions)."""
        return -(-self.max_units // self.partitions)

    @property
    def output_retention_ms(self) -> int:
        return self.output_retention_days * DAY_MS

    @field_validator("rolling_slice_ms")
    @classmethod
    def _slice_divides_span(cls, slice_ms: int, info: object) -> int:
        span = getattr(info, "data", {}).get("rolling_span_ms")
        if span is not None and span % slice_ms:
            raise ValueError(f"must divide CEMI_ROLLING_SPAN_MS ({span})")
        return slice_ms

    @model_validator(mode="after")
    def _security_is_consistent(self) -> Settings:
        problems: list[tuple[str, str]] = []
        protocol = self.security_protocol
        uses_ssl = protocol in ("SSL", "SASL_SSL")
        uses_sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
        ssl_fields: dict[str, object] = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_key_password": self.ssl_key_password,
        }
        for name, value in ssl_fields.items():
            if value is not None and not uses_ssl:
                problems.append((name, f"set, but CEMI_SECURITY_PROTOCOL is {protocol} (no TLS)"))
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and uses_ssl and not _readable(path):
                problems.append((name, f"cannot read {path}"))
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            problems.append(("ssl_keyfile", "set without CEMI_SSL_CERTFILE"))
        if self.ssl_key_password is not None and self.ssl_certfile is None:
            problems.append(("ssl_key_password", "set without CEMI_SSL_CERTFILE"))
        sasl_fields: dict[str, object] = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_username": self.sasl_username,
            "sasl_password": self.sasl_password,
            "sasl_password_file": self.sasl_password_file,
        }
        if not uses_sasl:
            for name, set_value in sasl_fields.items():
                if set_value is not None:
                    problems.append(
                        (name, f"set, but CEMI_SECURITY_PROTOCOL is {protocol} (no SASL)")
                    )
        else:
            if not self.sasl_username:
                problems.append(("sasl_username", f"required with {protocol}"))
            secret = _secret("sasl_password", self.sasl_password, self.sasl_password_file, problems)
            if secret is None and not any(n.startswith("sasl_password") for n, _ in problems):
                problems.append(
                    ("sasl_password", f"required with {protocol} (or CEMI_SASL_PASSWORD_FILE)")
                )
            self._sasl_secret = secret
        key = _secret(
            "customer_ref_hmac_key",
            self.customer_ref_hmac_key,
            self.customer_ref_hmac_key_file,
            problems,
        )
        if key is not None and len(key.get_secret_value().encode()) < MIN_HMAC_KEY_BYTES:
            name = "customer_ref_hmac_key" + ("_file" if self.customer_ref_hmac_key_file else "")
            problems.append((name, f"must be at least {MIN_HMAC_KEY_BYTES} bytes"))
            key = None
        self._hmac_key = key
        if problems:
            # one line per problem, each naming its variable (load_settings splits them)
            raise ValueError("\n".join(f"CEMI_{n.upper()}: {m}" for n, m in problems))
        return self

    @property
    def sasl_secret(self) -> SecretStr | None:
        """The SASL password, from CEMI_SASL_PASSWORD or CEMI_SASL_PASSWORD_FILE."""
        return self._sasl_secret

    @property
    def hmac_key(self) -> bytes | None:
        """The customer_ref pseudonymisation key, or None (no pseudonymisation)."""
        return None if self._hmac_key is None else self._hmac_key.get_secret_value().encode()

    @field_validator("api_read_auth")
    @classmethod
    def _read_auth_needs_a_token(cls, read_auth: bool, info: object) -> bool:
        if read_auth and getattr(info, "data", {}).get("api_token") is None:
            raise ValueError("needs CEMI_API_TOKEN")
        return read_auth

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
            message = str(item["msg"]).removeprefix("Value error, ")
            if not item["loc"]:  # a cross-field check: "CEMI_NAME: message" per line
                for line in message.splitlines():
                    name, _, text = line.partition(": ")
                    problems.append((name, text))
                continue
            name = "CEMI_" + "_".join(str(p) for p in item["loc"]).upper()
            problems.append((name, message))
        raise SettingsError(problems) from None


def _readable(path: Path) -> bool:
    try:
        with path.open("rb"):
            return True
    except OSError:
        return False


def _secret(
    name: str, value: SecretStr | None, file: Path | None, problems: list[tuple[str, str]]
) -> SecretStr | None:
    """A secret given directly or in a file (one of the two; trailing newline dropped)."""
    if value is not None and file is not None:
        problems.append((f"{name}_file", f"set together with CEMI_{name.upper()}: use one"))
        return None
    if file is None:
        if value is not None and not value.get_secret_value():
            problems.append((name, "is empty"))
            return None
        return value
    try:
        text = file.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        problems.append((f"{name}_file", f"cannot read {file}: {type(error).__name__}"))
        return None
    if not text:
        problems.append((f"{name}_file", f"{file} is empty"))
        return None
    return SecretStr(text)
