"""prognos against an MLflow tracking server as users run it: ``mlflow server`` with a PostgreSQL
backend store and proxied artifacts. Training logs and registers through it, ``prognos serve``
loads ``models:/NAME@champion`` from it, and a promotion moves the alias on the server (which the
running service follows)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from prognos.config import get_settings
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.monitoring.build import profile_from_training
from prognos.training.config import TrainConfig
from prognos.training.flow import train
from tests.helpers.configs import QUICK
from tests.helpers.serving import body_for, free_port, readings, server_process
from tests.helpers.tools import background
from tests.helpers.trained import Trained

MLFLOW = Path(sys.executable).with_name("mlflow")


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow server did not answer within {timeout:.0f} s:\n{log.read_text()}")


@pytest.mark.slow
@pytest.mark.services
def test_train_serve_and_promote_through_an_mlflow_server(
    postgres_url: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", postgres_url,
        "--artifacts-destination", (tmp_path / "artifacts").as_uri(), "--serve-artifacts",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with background(args, tmp_path / "mlflow.log", env) as server:
        _wait_for(url, server, tmp_path / "mlflow.log", 180)
        home = tmp_path / "home"
        settings = get_settings(home=home, mlflow_tracking_uri=url)
        data = simulate_fleet(SimulatorConfig(n_assets=24, seed=11))
        first = train(
            data, TrainConfig.model_validate(QUICK), settings, name="tiny",
            reference=profile_from_training,
        )  # fmt: skip
        assert first.gate.passed
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        assert client.get_model_version_by_alias("tiny", "champion").version == "1"
        # Nothing went to a local store: the runs, the registry and the artifacts are the server's.
        assert not (home / "mlflow.db").exists()
        assert any((tmp_path / "artifacts").rglob("MLmodel"))

        # A second version, registered on the server from the first one's model (a second
        # training through the server would prove nothing more, at 20 s): not champion yet.
        assert client.copy_model_version("models:/tiny/1", "tiny").version == "2"
        assert client.get_model_version_by_alias("tiny", "champion").version == "1"

        trained = Trained(home=home, name="tiny", fleet=simulate_fleet(
            SimulatorConfig(n_assets=2, seed=12)).readings)  # fmt: skip
        serve_env = {
            "MLFLOW_TRACKING_URI": url,
            "PROGNOS_DATABASE_URL": f"sqlite:///{tmp_path}/service.db",
            "PROGNOS_MODEL_POLL_SECONDS": "1",
        }
        rows = readings(trained, 0, 3)
        with server_process(trained, tmp_path, serve_env) as service:
            response = httpx.post(f"{service.url}/predict", json=body_for(rows[0]), timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == "1"

            # Promote through the server with the CLI, as an operator would.
            promote = subprocess.run(
                [str(MLFLOW.with_name("prognos")), "models", "promote", "tiny", "2",
                 "--home", str(home)],
                env={**env, **serve_env}, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert promote.returncode == 0, promote.stdout + promote.stderr
            assert client.get_model_version_by_alias("tiny", "champion").version == "2"

            # The running service follows the alias on the server.
            assert service.wait_until(lambda h: str(h.get("model_version")) == "2", 120), (
                service.log.read_text()
            )
            response = httpx.post(f"{service.url}/predict", json=body_for(rows[1]), timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == "2"
