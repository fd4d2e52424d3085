"""Schemathesis against the OpenAPI schema of a running service: no input makes it answer 5xx."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings

from prognos.serving.app import create_app
from tests.helpers.serving import body_for, readings
from tests.helpers.trained import Trained


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_service(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server (uvicorn in a thread) on 127.0.0.1, with a few assets already known."""
    db = tmp_path_factory.mktemp("fuzz") / "db.sqlite"
    settings_ = trained.settings(
        model_name=trained.name, auth_enabled=False, database_url=f"sqlite:///{db}"
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings_), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    for row in readings(trained, 0, 5):
        httpx.post(f"{url}/predict", json=body_for(row), timeout=10).raise_for_status()
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_no_input_gets_a_server_error(live_service: str) -> None:
    """Every operation of the OpenAPI schema, fuzzed by schemathesis's generated cases.

    Driven from a plain test (not ``schema.parametrize``) so the schema is loaded from the live
    server after it starts. 503 is a legitimate answer of this API (a dependency away); any other
    5xx is a bug.
    """
    schema = schemathesis.openapi.from_url(f"{live_service}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            response = case.call()
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.body!r:.200}: "
                    f"{response.status_code} {response.text[:200]}"
                )

        fuzz()
    assert operations >= 9
    assert not failures, "\n".join(failures[:10])
