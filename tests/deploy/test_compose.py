"""docker-compose.yml: valid for Compose, and wired to the deploy/ files (no Docker here:
`docker-compose config` from Debian's package validates without a daemon)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.deploy.promql import DEPLOY, ROOT
from tests.deploy.tools import require, run

COMPOSE = ROOT / "docker-compose.yml"
LONG_RUNNING = {
    "kafka",
    "schema-registry",
    "worker-1",
    "worker-2",
    "prometheus",
    "alertmanager",
    "grafana",
}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def test_docker_compose_config_accepts_the_stack() -> None:
    checked = run(require("docker-compose"), "-f", str(COMPOSE), "config", "-q", cwd=ROOT)
    assert checked.returncode == 0, checked.stderr


def test_docker_compose_config_rejects_a_broken_stack(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["simulator"]["depends_on"]["worker-3"] = {"condition": "service_healthy"}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    checked = run(require("docker-compose"), "-f", str(path), "config", "-q", cwd=tmp_path)
    assert checked.returncode != 0
    assert "worker-3" in checked.stderr


def test_stack_has_kraft_kafka_registry_two_workers_simulator_and_monitoring() -> None:
    services = compose()["services"]
    assert set(services) == LONG_RUNNING | {"simulator"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["schema-registry"]["image"].startswith("confluentinc/cp-schema-registry:")
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        assert worker["command"][0] == "worker"
        assert worker["environment"]["CEMI_BROKER_URL"] == "kafka:9092"
        assert worker["environment"]["CEMI_WEB_HOST"] == "0.0.0.0"
        assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["simulator"]["command"][0] == "simulate"
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_prometheus_in_the_stack_scrapes_both_workers_on_their_web_port() -> None:
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "cemi-worker"]
    targets = {t for c in job["static_configs"] for t in c["targets"]}
    port = services["worker-1"]["environment"]["CEMI_WEB_PORT"]
    assert targets == {f"worker-1:{port}", f"worker-2:{port}"}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]


def test_every_mounted_file_and_build_input_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:  # a stage's output is built
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_image_installs_the_wheel_it_builds_not_the_source_tree() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip wheel" in dockerfile and "COPY --from=wheel /dist /dist" in dockerfile
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert "COPY streams" not in final_stage and ".whl" in final_stage
