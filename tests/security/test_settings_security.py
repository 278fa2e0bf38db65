"""Security settings: each kind of mistake refuses to start naming the variable; secrets are
never printed (repr, str, JSON dump, error messages, CLI output, worker log)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker
from streams.settings import Settings, SettingsError, load_settings

CEMI = str(Path(sys.executable).with_name("cemi"))
PASSWORD = "pw-Zebra-71-never-printed"
HMAC_KEY = "hmac-key-Quokka-93-never-printed"


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


def problems(**overrides: Any) -> dict[str, str]:
    with pytest.raises(SettingsError) as refused:
        load_settings(**overrides)
    return dict(refused.value.problems)


@pytest.mark.parametrize(
    ("overrides", "variable", "says"),
    [
        ({"security_protocol": "TLS"}, "CEMI_SECURITY_PROTOCOL", "PLAINTEXT"),
        ({"sasl_mechanism": "GSSAPI"}, "CEMI_SASL_MECHANISM", "SCRAM-SHA-256"),
        ({"ssl_check_hostname": "perhaps"}, "CEMI_SSL_CHECK_HOSTNAME", "boolean"),
        # TLS files without TLS, SASL settings without SASL
        ({"ssl_cafile": "PEM"}, "CEMI_SSL_CAFILE", "is PLAINTEXT (no TLS)"),
        ({"ssl_certfile": "PEM"}, "CEMI_SSL_CERTFILE", "is PLAINTEXT (no TLS)"),
        ({"sasl_username": "u"}, "CEMI_SASL_USERNAME", "is PLAINTEXT (no SASL)"),
        (
            {"security_protocol": "SSL", "sasl_password": PASSWORD},
            "CEMI_SASL_PASSWORD",
            "is SSL (no SASL)",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "ssl_cafile": "PEM", **{"sasl_username": "u"}},
            "CEMI_SSL_CAFILE",
            "(no TLS)",
        ),
        # TLS: unreadable files, a key without its certificate
        (
            {"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"},
            "CEMI_SSL_CAFILE",
            "cannot read /nonexistent/ca.pem",
        ),
        (
            {"security_protocol": "SSL", "ssl_keyfile": "PEM"},
            "CEMI_SSL_KEYFILE",
            "without CEMI_SSL_CERTFILE",
        ),
        (
            {"security_protocol": "SSL", "ssl_key_password": PASSWORD},
            "CEMI_SSL_KEY_PASSWORD",
            "without CEMI_SSL_CERTFILE",
        ),
        # SASL: user and password required; a password from one source only
        (
            {"security_protocol": "SASL_SSL", "sasl_password": PASSWORD},
            "CEMI_SASL_USERNAME",
            "required with SASL_SSL",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"},
            "CEMI_SASL_PASSWORD",
            "required with SASL_PLAINTEXT",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": ""},
            "CEMI_SASL_PASSWORD",
            "is empty",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_username": "u",
                "sasl_password": PASSWORD,
                "sasl_password_file": "PEM",
            },
            "CEMI_SASL_PASSWORD_FILE",
            "set together with CEMI_SASL_PASSWORD",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_username": "u",
                "sasl_password_file": "/nonexistent/pw",
            },
            "CEMI_SASL_PASSWORD_FILE",
            "cannot read /nonexistent/pw",
        ),
        # the customer_ref HMAC key
        ({"customer_ref_hmac_key": "short"}, "CEMI_CUSTOMER_REF_HMAC_KEY", "at least 16 bytes"),
        (
            {"customer_ref_hmac_key_file": "/nonexistent/key"},
            "CEMI_CUSTOMER_REF_HMAC_KEY_FILE",
            "cannot read",
        ),
        (
            {"customer_ref_hmac_key": HMAC_KEY, "customer_ref_hmac_key_file": "PEM"},
            "CEMI_CUSTOMER_REF_HMAC_KEY_FILE",
            "set together",
        ),
    ],
)
def test_each_kind_of_security_mistake_is_refused_naming_the_variable(
    overrides: dict[str, Any], variable: str, says: str, pem: Path
) -> None:
    overrides = {k: (str(pem) if v == "PEM" else v) for k, v in overrides.items()}
    found = problems(**overrides)
    assert variable in found, found
    assert says in found[variable], found
    assert PASSWORD not in str(found) and HMAC_KEY not in str(found)


def test_empty_secret_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    found = problems(
        security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password_file=str(empty)
    )
    assert "is empty" in found["CEMI_SASL_PASSWORD_FILE"]
    assert (
        "is empty"
        in problems(customer_ref_hmac_key_file=str(empty))["CEMI_CUSTOMER_REF_HMAC_KEY_FILE"]
    )


def test_secrets_from_files_trailing_newline_dropped(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "key").write_text(HMAC_KEY + "\r\n")
    settings = load_settings(
        security_protocol="SASL_PLAINTEXT",
        sasl_username="u",
        sasl_password_file=str(tmp_path / "pw"),
        customer_ref_hmac_key_file=str(tmp_path / "key"),
    )
    assert settings.sasl_secret is not None
    assert settings.sasl_secret.get_secret_value() == PASSWORD
    assert settings.hmac_key == HMAC_KEY.encode()


def test_valid_combinations_load(pem: Path) -> None:
    assert load_settings().security_protocol == "PLAINTEXT"
    assert load_settings().hmac_key is None
    tls = load_settings(security_protocol="SSL", ssl_cafile=str(pem), ssl_check_hostname="false")
    assert tls.ssl_check_hostname is False
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        sasl = load_settings(
            security_protocol="SASL_SSL",
            sasl_mechanism=mechanism,
            sasl_username="u",
            sasl_password=PASSWORD,
        )
        assert sasl.sasl_mechanism == mechanism


def secret_settings(tmp_path: Path) -> Settings:
    return load_settings(
        security_protocol="SASL_SSL",
        sasl_username="svc-cemi",
        sasl_password=PASSWORD,
        customer_ref_hmac_key=HMAC_KEY,
    )


def test_settings_never_show_their_secrets(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path)
    shown = [
        repr(settings),
        str(settings),
        f"{settings}",
        settings.model_dump_json(),
        str(settings.model_dump()),
        repr(settings.sasl_secret),
    ]
    for text in shown:
        assert PASSWORD not in text
        assert HMAC_KEY not in text
    assert "**********" in repr(settings)
    from streams.kafka_security import describe, faust_credentials

    assert PASSWORD not in describe(settings) and "svc-cemi" in describe(settings)
    assert PASSWORD not in repr(faust_credentials(settings))


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEMI_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CEMI_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CEMI_SASL_USERNAME", "svc")
    monkeypatch.setenv("CEMI_SASL_PASSWORD", PASSWORD)
    settings = load_settings()
    assert settings.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.sasl_secret is not None
    assert settings.sasl_secret.get_secret_value() == PASSWORD


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CEMI, "worker"], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CEMI_SECURITY_PROTOCOL": "TLS"}, "CEMI_SECURITY_PROTOCOL"),
        ({"CEMI_SASL_PASSWORD": PASSWORD}, "CEMI_SASL_PASSWORD"),
        (
            {"CEMI_SECURITY_PROTOCOL": "SSL", "CEMI_SSL_CAFILE": "/nonexistent/ca.pem"},
            "CEMI_SSL_CAFILE",
        ),
        (
            {"CEMI_SECURITY_PROTOCOL": "SASL_SSL", "CEMI_SASL_PASSWORD": PASSWORD},
            "CEMI_SASL_USERNAME",
        ),
        ({"CEMI_CUSTOMER_REF_HMAC_KEY": "short"}, "CEMI_CUSTOMER_REF_HMAC_KEY"),
        ({"CEMI_SSL_CHECK_HOSTNAME": "maybe"}, "CEMI_SSL_CHECK_HOSTNAME"),
    ],
)
def test_cli_worker_refuses_to_start_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    result = run_worker(env)
    assert result.returncode == 2, result.stderr
    assert "invalid settings:" in result.stderr
    assert f"  {variable}: " in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.broker
def test_worker_log_never_contains_the_sasl_password(tmp_path: Path) -> None:
    """A worker at debug log level that fails SASL (the embedded broker has none) for a few
    seconds: its whole output is free of the password."""
    log = tmp_path / "worker.log"
    with EmbeddedBroker() as broker:
        import asyncio

        from streams.topics import create_topics

        asyncio.run(create_topics(load_settings(topic_prefix="sasl"), broker.url))
        env = {
            **os.environ,
            "CEMI_BROKER_URL": broker.url,
            "CEMI_TOPIC_PREFIX": "sasl",
            "CEMI_STORE": "memory",
            "CEMI_DATA_DIR": str(tmp_path / "data"),
            "CEMI_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "CEMI_SASL_MECHANISM": "SCRAM-SHA-256",
            "CEMI_SASL_USERNAME": "svc-cemi",
            "CEMI_SASL_PASSWORD": PASSWORD,
            "CEMI_CUSTOMER_REF_HMAC_KEY": HMAC_KEY,
        }
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [CEMI, "worker", "--loglevel", "debug"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            time.sleep(8)
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
    text = log.read_text(errors="replace")
    assert text, "the worker wrote nothing"
    assert "Sasl" in text or "SASL" in text or "sasl" in text, text[-2000:]  # it did try
    assert PASSWORD not in text
    assert HMAC_KEY not in text
    print(f"\nworker log at debug level: {len(text.splitlines())} lines, no secret in them")
