"""`streams.kafka_security`: the aiokafka and Faust arguments for each security setting, and
a source scan that every Kafka client the project creates gets them."""

from __future__ import annotations

import ast
import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.kafka_security import client_kwargs, faust_credentials, ssl_context
from streams.settings import Settings, load_settings

STREAMS = Path(__file__).resolve().parents[2] / "streams"
PASSWORD = "pw-Ibex-44"
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.integration.test_tls import make_ca, write_pem

    _, cert = make_ca("kwargs test CA")
    return write_pem(tmp_path_factory.mktemp("ca") / "ca.pem", cert)


def without_context(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k != "ssl_context"}


def test_plaintext() -> None:
    settings = load_settings()
    assert client_kwargs(settings) == {"security_protocol": "PLAINTEXT"}
    assert ssl_context(settings) is None
    assert faust_credentials(settings) is None


def test_ssl_context_verifies_the_server(ca_file: Path) -> None:
    settings = load_settings(security_protocol="SSL", ssl_cafile=str(ca_file))
    kwargs = client_kwargs(settings)
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert any("kwargs test CA" in str(c["subject"]) for c in context.get_ca_certs())
    relaxed = client_kwargs(
        load_settings(security_protocol="SSL", ssl_cafile=str(ca_file), ssl_check_hostname=False)
    )["ssl_context"]
    assert relaxed.check_hostname is False
    assert relaxed.verify_mode == ssl.CERT_REQUIRED  # the certificate is still verified


def test_ssl_without_cafile_uses_the_system_trust_store() -> None:
    context = client_kwargs(load_settings(security_protocol="SSL"))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_kwargs_for_each_mechanism(protocol: str, mechanism: str, ca_file: Path) -> None:
    tls = {"ssl_cafile": str(ca_file)} if protocol == "SASL_SSL" else {}
    settings = load_settings(
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="svc-cemi",
        sasl_password=PASSWORD,
        **tls,
    )
    kwargs = client_kwargs(settings)
    assert without_context(kwargs) == {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "svc-cemi",
        "sasl_plain_password": PASSWORD,
    }
    assert ("ssl_context" in kwargs) == (protocol == "SASL_SSL")
    # Faust's credentials turn into the same aiokafka arguments
    faust_kwargs = credentials_to_aiokafka_auth(faust_credentials(settings))
    assert without_context(faust_kwargs) == without_context(kwargs)
    assert (faust_kwargs["ssl_context"] is None) == (protocol == "SASL_PLAINTEXT")

    # and aiokafka accepts them for each kind of client (it validates in the constructors)
    async def build() -> None:
        AIOKafkaProducer(bootstrap_servers="localhost:1", **kwargs)
        AIOKafkaConsumer(bootstrap_servers="localhost:1", **kwargs)
        AIOKafkaAdminClient(bootstrap_servers="localhost:1", **kwargs)

    asyncio.run(build())


def test_sasl_mechanism_defaults_to_plain() -> None:
    settings = load_settings(
        security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password=PASSWORD
    )
    assert client_kwargs(settings)["sasl_mechanism"] == "PLAIN"


def test_ssl_faust_credentials(ca_file: Path) -> None:
    settings = load_settings(security_protocol="SSL", ssl_cafile=str(ca_file))
    auth = credentials_to_aiokafka_auth(faust_credentials(settings))
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_the_faust_app_gets_the_credentials(ca_file: Path) -> None:
    from streams.worker.app import create_app

    settings = load_settings(
        store="memory",
        security_protocol="SASL_SSL",
        ssl_cafile=str(ca_file),
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc-cemi",
        sasl_password=PASSWORD,
    )
    app = create_app(settings, "localhost:1")
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert without_context(auth) == without_context(client_kwargs(settings))


# --- every Kafka client in streams/ is built with the security arguments ------------------

CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _secured(call: ast.Call) -> bool:
    for keyword in call.keywords:
        if keyword.arg is not None:
            continue
        value = keyword.value
        # **client_kwargs(settings) / **client_kwargs(self.settings)
        if isinstance(value, ast.Call) and _name(value.func).endswith("client_kwargs"):
            return True
        # **(security or {}): a function that takes client_kwargs(...) from its caller
        if (
            isinstance(value, ast.BoolOp)
            and isinstance(value.values[0], ast.Name)
            and value.values[0].id == "security"
        ):
            return True
    return False


def kafka_clients() -> list[tuple[str, int, str, bool]]:
    found = []
    for path in sorted(STREAMS.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            where = f"{path.relative_to(STREAMS.parent)}:{node.lineno}"
            if name.split(".")[-1] in CLIENTS:
                found.append((where, node.lineno, name, _secured(node)))
            elif name == "faust.App":
                has = any(k.arg == "broker_credentials" for k in node.keywords)
                found.append((where, node.lineno, name, has))
    return found


def test_every_kafka_client_in_streams_gets_the_security_settings() -> None:
    clients = kafka_clients()
    names = {name for _, _, name, _ in clients}
    assert {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient", "faust.App"} <= names
    unsecured = [where for where, _, _, secured in clients if not secured]
    assert not unsecured, f"Kafka clients built without client_kwargs: {unsecured}"


def _callers_of(function: str) -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(STREAMS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _name(node.func).split(".")[-1] == function:
                calls.append((f"{path.relative_to(STREAMS.parent)}:{node.lineno}", node))
    return calls


@pytest.mark.parametrize("function", ["read_topic", "latest_by_key", "follow_json"])
def test_callers_of_the_topic_readers_pass_the_security_settings(function: str) -> None:
    """The readers take `security=`; every call in streams/ passes it (the readers call
    each other with `security=security`)."""
    missing = []
    for where, call in _callers_of(function):
        keyword = next((k for k in call.keywords if k.arg == "security"), None)
        positional = function == "follow_json" and len(call.args) >= 3
        if keyword is None and not positional:
            missing.append(where)
    assert not missing, f"{function} called without security=: {missing}"


def test_settings_type_is_what_the_clients_read() -> None:
    # a guard against a field rename leaving kafka_security reading a default
    fields = set(Settings.model_fields)
    assert {
        "security_protocol",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_key_password",
        "ssl_check_hostname",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "sasl_password_file",
    } <= fields
