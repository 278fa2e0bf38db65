"""Integration fixtures: the embedded broker and real `cemi worker` processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.broker import EmbeddedBroker, free_port
from streams.settings import Settings, load_settings
from streams.topics import create_topics

CEMI = str(Path(sys.executable).with_name("cemi"))


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as embedded:
        yield embedded


class Worker:
    """A `cemi worker` subprocess with its own web port and log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.env = {**env, "CEMI_WEB_PORT": str(self.port)}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [CEMI, "worker", "--loglevel", "info"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
            return json.loads(reply.read())

    def stats(self) -> dict[str, Any] | None:
        try:
            return self.get("/api/v1/stats")  # type: ignore[no-any-return]
        except OSError:
            return None

    def stop(self, timeout: float = 30) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class Stream:
    """One isolated scorer deployment on the shared broker (own topics and group ids)."""

    def __init__(self, broker: EmbeddedBroker, tmp_path: Path, **settings: str) -> None:
        name = f"t{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "CEMI_BROKER_URL": broker.url,
            "CEMI_TOPIC_PREFIX": name,
            "CEMI_APP_ID": name,
            "CEMI_DATA_DIR": str(tmp_path / "data"),
            "CEMI_STORE": "memory",
            "CEMI_EMIT_INTERVAL_MS": "300",
            **{f"CEMI_{k.upper()}": v for k, v in settings.items()},
        }
        self.settings: Settings = load_settings(
            broker_url=broker.url,
            topic_prefix=name,
            app_id=name,
            **{k: v for k, v in settings.items()},
        )
        self.bootstrap = broker.url
        self.tmp_path = tmp_path
        self.workers: list[Worker] = []
        asyncio.run(create_topics(self.settings, broker.url))

    def worker(self) -> Worker:
        worker = Worker(self.env, self.tmp_path / f"worker{len(self.workers)}.log").start()
        self.workers.append(worker)
        return worker

    def wait_for(self, done: Any, timeout: float = 120, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.5)
        logs = "\n".join(w.log.read_text()[-3000:] for w in self.workers)
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def totals(self) -> dict[str, int]:
        total = {"scored": 0, "duplicates": 0, "late": 0, "consumed": 0}
        for worker in self.workers:
            stats = worker.stats() or {}
            for key in total:
                total[key] += stats.get(key, 0)
        return total

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def stream_factory(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Any]:
    made: list[Stream] = []

    def make(**settings: str) -> Stream:
        made.append(Stream(broker, tmp_path, **settings))
        return made[-1]

    yield make
    for stream in made:
        stream.close()
