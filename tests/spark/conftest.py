"""One local[2] Spark session for the whole test session (a JVM start costs 10-30 s).

Without PySpark or Java the Spark tests skip with the reason on a user's machine; under CI
(``CI=true``) they fail instead, as the ``services`` tests do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from prognos.config import get_settings
from prognos.errors import EngineError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    from prognos.spark.session import check_available, spark_session

    try:
        check_available()
    except EngineError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"Spark unavailable under CI: {exc}")
        pytest.skip(str(exc))
    session = spark_session(get_settings(spark_master="local[2]"), app_name="prognos-tests")
    # Few, small groups in tests: 2 shuffle partitions instead of 200 empty tasks.
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    session.stop()
