"""The Debian tools the deploy tests run (promtool, amtool, prometheus, alertmanager)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from streams.broker import free_port


def require(tool: str) -> str:
    """The tool's path; in CI a missing tool fails the test, elsewhere it skips it."""
    path = shutil.which(tool)
    if path is None:
        message = (
            f"{tool} is not installed (Debian packages prometheus, prometheus-alertmanager: "
            "CI=true scripts/setup.sh installs them)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


class Server:
    """A Prometheus or Alertmanager process on a free loopback port, with its own storage."""

    def __init__(self, args: list[str], port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    @classmethod
    def prometheus(cls, config: Path, storage: Path) -> Server:
        port = free_port()
        return cls(
            [
                require("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            port,
            storage.parent / "prometheus.log",
        )

    @classmethod
    def alertmanager(cls, config: Path, storage: Path) -> Server:
        port = free_port()
        return cls(
            [
                require("prometheus-alertmanager"),
                f"--config.file={config}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            port,
            storage.parent / "alertmanager.log",
        )

    def get(self, path: str, **params: str) -> Any:
        """The JSON answer; an HTTP error raises AssertionError with the server's message."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{path} {params}: {error.code} {error.read()!r}") from None

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            data = reply.read()
            return json.loads(data) if data else None

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
