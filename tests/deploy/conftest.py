"""Fixtures of the deployment tests: the shipped files and the programs that check them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tools import required_tool

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@pytest.fixture(scope="session")
def promtool() -> str:
    return required_tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def prometheus() -> str:
    return required_tool("prometheus", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return required_tool("amtool", "prometheus-alertmanager")


@pytest.fixture(scope="session")
def docker_compose() -> str:
    return required_tool("docker-compose", "docker-compose")
