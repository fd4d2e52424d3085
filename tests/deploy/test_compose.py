"""compose.yaml, the Dockerfile and the env file, checked without a Docker engine: the compose
file is valid for ``docker-compose config`` (Debian's docker-compose), refers only to files in
the repository, uses only commands, options and settings prognos has, and takes every secret
from the gitignored ``.env`` that ``.env.example`` documents."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from prognos.config import Settings
from tests.deploy.conftest import REPO
from tests.helpers.cli import run
from tests.helpers.tools import run_tool

COMPOSE = REPO / "compose.yaml"
EXAMPLE = REPO / ".env.example"
SERVICES = {
    "postgres", "redis", "mosquitto", "mlflow", "migrate", "api", "lb", "ingester", "prefect",
    "flows", "prometheus", "alertmanager", "grafana",
}  # fmt: skip
_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _config(docker_compose: str, env_file: Path, compose: Path = COMPOSE) -> Any:
    return run_tool(docker_compose, "--env-file", env_file, "-f", compose, "config")


@pytest.fixture(scope="module")
def resolved(docker_compose: str) -> dict[str, Any]:
    done = _config(docker_compose, EXAMPLE)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = yaml.safe_load(done.stdout)
    return document


def test_docker_compose_config_accepts_the_stack(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("restart") in {"unless-stopped", "on-failure"}, name
        if name != "migrate":  # a one-shot job: done, not healthy
            assert service["healthcheck"]["test"], name
    assert int(services["api"]["deploy"]["replicas"]) >= 2
    assert "ports" not in services["api"]  # only through the load balancer
    assert [p["target"] for p in services["lb"]["ports"]] == [8000]
    api_env = services["api"]["environment"]
    assert api_env["PROGNOS_REDIS_URL"].startswith("redis://")  # replicas share state
    assert api_env["PROGNOS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert api_env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "postgresql+psycopg://" in " ".join(services["mlflow"]["command"])


def test_docker_compose_config_refuses_a_broken_file(docker_compose: str, tmp_path: Path) -> None:
    """The validator can fail: an unknown key, and a secret missing from the env file."""
    document = yaml.safe_load(COMPOSE.read_text())
    document["services"]["api"]["restrt"] = "always"
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(document))
    done = _config(docker_compose, EXAMPLE, broken)
    assert done.returncode != 0 and "restrt" in done.stderr
    lacking = tmp_path / "lacking.env"
    lacking.write_text(
        "".join(line + "\n" for line in EXAMPLE.read_text().splitlines()
                if not line.startswith("REDIS_PASSWORD="))
    )  # fmt: skip
    done = _config(docker_compose, lacking)
    assert done.returncode != 0 and "REDIS_PASSWORD" in done.stderr


def _raw() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_the_compose_file_refers_only_to_files_in_the_repository() -> None:
    services = _raw()["services"]
    sources = [
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert len(sources) >= 6
    for source in sources:
        assert (REPO / source).exists(), source
    builds = {s["build"] for s in services.values() if "build" in s}
    assert builds == {"."} and (REPO / "Dockerfile").exists()


def test_secrets_come_from_the_gitignored_env_file_that_the_example_documents() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=REPO, check=False, timeout=30
    )
    assert ignored.returncode == 0, ".env must be gitignored"
    example_ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".env.example"], cwd=REPO, check=False, timeout=30
    )
    assert example_ignored.returncode == 1, ".env.example must be committed"
    used = set(_VARIABLE.findall(COMPOSE.read_text()))
    documented = {
        line.split("=", 1)[0]
        for line in EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used == documented
    # Each documented variable has a comment above its block.
    assert EXAMPLE.read_text().count("\n#") >= 8


def _prognos_commands() -> list[list[str]]:
    raw = _raw()
    commands = [raw["x-prognos"].get("command")] if "command" in raw["x-prognos"] else []
    commands += [s["command"] for s in raw["services"].values() if "command" in s]
    return [c for c in commands if isinstance(c, list) and c[0] == "prognos"]


def test_every_prognos_command_and_option_exists() -> None:
    commands = _prognos_commands()
    assert len(commands) == 4  # migrate, api, ingester, flows
    for command in commands:
        words = [w for w in command[1:] if not w.startswith("-")]
        options = [w.split("=", 1)[0] for w in command[1:] if w.startswith("--")]
        result = run(*words, "--help")
        assert result.exit_code == 0, (command, result.output)
        for option in options:
            assert option in result.output, (command, option)


def test_every_prognos_setting_the_stack_sets_exists() -> None:
    raw = _raw()
    names: set[str] = set(raw["x-prognos"]["environment"])
    for service in raw["services"].values():
        environment = service.get("environment") or {}
        names |= {
            n for n in environment if n.startswith(("PROGNOS_", "MLFLOW_", "PREFECT_API_URL"))
        }
    accepted = {f"PROGNOS_{field.upper()}" for field in Settings.model_fields}
    accepted |= {"MLFLOW_TRACKING_URI", "PREFECT_API_URL"}  # Settings' aliases
    assert names - accepted == set()
    assert {"PROGNOS_DATABASE_URL", "PROGNOS_REDIS_URL", "PROGNOS_STREAM_METRICS_HOST"} <= names


def test_the_dockerfile_is_slim_non_root_cpu_torch_with_a_health_check() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages and all(s == "python:3.11-slim" for s in stages)
    assert re.search(r"^USER prognos$", text, re.MULTILINE)
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in text
    assert "torch==2.13.0" in (REPO / "pyproject.toml").read_text()  # the same pin
    assert re.search(r"^HEALTHCHECK .*\n.*127\.0\.0\.1:8000/health", text, re.MULTILINE)
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[1:4] == ["*", "!pyproject.toml", "!README.md"] and "!src/" in ignore
