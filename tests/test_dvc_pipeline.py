"""dvc.yaml runs end to end on a tiny fleet (data -> features -> train -> evaluate over the lake)
and what it versions goes to a local DVC remote and comes back byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.configs import QUICK

REPO = Path(__file__).resolve().parents[1]
VERSIONED = ("lake", "features", "train")


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for name in VERSIONED
        for p in sorted((root / name).rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_dvc_repro_push_and_pull(tmp_path: Path) -> None:
    dvc = Path(sys.executable).parent / "dvc"
    if not dvc.exists() or shutil.which("git") is None:
        pytest.skip("needs dvc (the dev extra) and git")
    work = tmp_path / "work"
    (work / "pipeline").mkdir(parents=True)
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(train="sim:n_assets=10,seed=3", holdout="sim:n_assets=4,seed=4")
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    (work / "pipeline" / "train.yaml").write_text(yaml.safe_dump(QUICK))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROGNOS_", "MLFLOW_")) and k != "DVC_REMOTE"
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PROGNOS_HOME=str(work / ".prognos"),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@127.0.0.1",
        GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@127.0.0.1",
    )  # fmt: skip

    def sh(*args: str | Path) -> str:
        done = subprocess.run(
            [str(a) for a in args], cwd=work, env=env, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    sh("git", "init", "-q")
    (work / ".gitignore").write_text(".prognos/\n")
    sh(dvc, "init", "-q")
    sh(dvc, "repro")
    metrics = json.loads((work / "metrics.json").read_text())
    summary = json.loads((work / "train" / "summary.json").read_text())
    assert metrics["rmse"] is not None and metrics["rmse"] > 0
    assert summary["name"] == "engines" and len(summary["snapshot"]) == 64
    assert (work / "features" / "engines.parquet").exists()
    assert "Data and pipelines are up to date" in sh(dvc, "status")

    before = _digests(work)
    assert any(name.startswith("lake/fleet=engines/date=") for name in before)
    sh(dvc, "remote", "add", "-d", "local", tmp_path / "remote")
    sh(dvc, "push")
    for name in VERSIONED:
        shutil.rmtree(work / name)
    shutil.rmtree(work / ".dvc" / "cache")
    sh(dvc, "pull")
    assert _digests(work) == before
    assert "Data and pipelines are up to date" in sh(dvc, "status")
