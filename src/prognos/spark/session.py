"""The Spark session: local ``local[N]`` by default, any master or Spark Connect from Settings.

Built at the edge (the CLI, a bench script, a test fixture) and passed in; pyspark is imported
here, on first use, never when prognos is imported.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from typing import TYPE_CHECKING

from prognos.config import Settings
from prognos.errors import EngineError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Arrow moves pandas batches to and from the Python workers (no row-by-row pickling).
_ARROW = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
}


def master_url(settings: Settings) -> str:
    """``PROGNOS_SPARK_MASTER``, else ``local[N]`` over this machine's CPUs."""
    return settings.spark_master or f"local[{os.cpu_count() or 1}]"


def check_available() -> None:
    """Raise :class:`EngineError` naming what is missing: pyspark, or Java for a local JVM."""
    try:
        import pyspark
    except ImportError as exc:
        raise EngineError(
            "--engine spark needs PySpark: pip install 'prognos[spark]' (PySpark 4)"
        ) from exc
    if int(pyspark.__version__.split(".")[0]) < 4:
        raise EngineError(f"--engine spark needs PySpark 4, found {pyspark.__version__}")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise EngineError("--engine spark runs a JVM: install Java 17 (or set JAVA_HOME)")


def spark_session(
    settings: Settings, *, master: str | None = None, app_name: str = "prognos"
) -> SparkSession:
    """A session for ``master`` (default :func:`master_url`, or the submission's under
    ``spark-submit``). ``sc://`` URLs connect to a Spark Connect server; anything else starts
    (or reuses) a classic session."""
    url = master or master_url(settings)
    # PySpark 4 warns at every pandas conversion that it does not fully support pandas 3; what
    # prognos uses of it is what the parity tests check.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support", FutureWarning)
    if url.startswith("sc://"):
        from pyspark.sql import SparkSession

        try:
            return SparkSession.builder.remote(url).appName(app_name).getOrCreate()
        except Exception as exc:  # grpc/connect errors have no common base worth naming
            raise EngineError(f"cannot connect to Spark Connect at {url}: {exc}") from exc
    check_available()
    from pyspark.sql import SparkSession

    if master is None and settings.spark_master is None and "PYSPARK_GATEWAY_PORT" in os.environ:
        # Launched by spark-submit (it starts the JVM and hands us its gateway): the
        # submission's master, memory and executors stand.
        builder = SparkSession.builder.appName(app_name)
        for key, value in _ARROW.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()
    if url.startswith("local"):
        # Python workers must be this interpreter (with prognos and pyarrow), not the first
        # `python3` on PATH; on a cluster spark-submit's spark.pyspark.python sets it instead.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(url).appName(app_name)
    for key, value in _ARROW.items():
        builder = builder.config(key, value)
    if url.startswith("local"):
        builder = (
            builder.config("spark.driver.memory", settings.spark_driver_memory)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
        )
    try:
        return builder.getOrCreate()
    except Exception as exc:  # Py4J / JVM start-up failures
        raise EngineError(f"cannot start Spark ({url}): {first_line(exc)}") from exc


def job_error(exc: BaseException) -> str:
    """What failed a job: the Python error a worker raised (the last ``Name: message`` line of
    its traceback, e.g. a prognos SchemaError), else the exception's first line."""
    import re

    raised = re.findall(r"^\s*((?:[\w.]+\.)?\w*(?:Error|Exception): .+)$", str(exc), re.M)
    return raised[-1].strip() if raised else first_line(exc)


def first_line(exc: BaseException) -> str:
    """An exception's first non-empty line: Spark errors carry whole JVM stack traces."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
