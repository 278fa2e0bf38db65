"""Kafka TLS and SASL for every client the project creates, from the settings (one place).

`client_kwargs(settings)` gives the keyword arguments of aiokafka's producers, consumers and
admin client; `faust_credentials(settings)` gives Faust's `broker_credentials` (Faust turns
them into the same aiokafka arguments for its own clients). Every Kafka client in `streams/`
is built with one of the two, and a test checks that no client is built without them.

Secrets stay `SecretStr` until the moment a client is built; nothing here logs them.
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A client TLS context (TLS 1.2+, server certificate verified), or None without TLS."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.ssl_check_hostname
    context.verify_mode = ssl.CERT_REQUIRED  # never turned off, even without hostname checks
    if settings.ssl_certfile is not None:
        password = settings.ssl_key_password
        context.load_cert_chain(
            str(settings.ssl_certfile),
            str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            password.get_secret_value() if password else None,
        )
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments (`security_protocol`, `ssl_context`, `sasl_*`)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        secret = settings.sasl_secret
        kwargs["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = secret.get_secret_value() if secret else None
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """Faust's `broker_credentials` for the same settings (None for PLAINTEXT)."""
    import faust

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    secret = settings.sasl_secret
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=secret.get_secret_value() if secret else None,
        ssl_context=context,
        mechanism=settings.sasl_mechanism or "PLAIN",
    )


def describe(settings: Settings) -> str:
    """A loggable one-line summary of the security settings (no secrets)."""
    parts: list[str] = [settings.security_protocol]
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        parts.append(f"ca={settings.ssl_cafile or 'system'}")
        parts.append(f"client_cert={'yes' if settings.ssl_certfile else 'no'}")
        parts.append(f"check_hostname={settings.ssl_check_hostname}")
    if settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        parts.append(f"sasl={settings.sasl_mechanism or 'PLAIN'} user={settings.sasl_username}")
    return " ".join(parts)
