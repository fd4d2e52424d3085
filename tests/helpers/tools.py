"""External programs the deployment tests run (promtool, prometheus, amtool, docker-compose):
found on PATH, else skipped with the reason on a user's machine and failed under CI=true, like
the ``services`` fixtures."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def required_tool(name: str, package: str) -> str:
    """The path of ``name``; skips (or fails under CI) when it is not installed."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} not found (Debian package {package}; scripts/bootstrap.sh installs it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{name} unavailable under CI: {reason}")
        pytest.skip(reason)
    return found


def run_tool(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a program to completion; its output is in the result for the assertion message."""
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def background(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running program in a process group of its own, killed (SIGKILL, the whole group)
    whatever happens in the ``with`` block."""
    with log.open("w") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
