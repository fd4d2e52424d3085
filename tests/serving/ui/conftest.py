"""The dashboard tests' data (built once per session: a few seconds of predictions, alerts and
monitoring runs) and, for the browser tests, Debian's chromium driven by Selenium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO, _missing_service
from tests.helpers.dashboard import Dashboard, make_dashboard
from tests.helpers.trained import Trained

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

CHROMIUM = Path(os.environ.get("PROGNOS_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("PROGNOS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
# Where the browser tests leave a screenshot of every page (gitignored).
SCREENSHOTS = REPO / "test-output" / "ui"


@pytest.fixture(scope="session")
def dash(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Dashboard:
    return make_dashboard(trained, tmp_path_factory.mktemp("ui") / "home")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Chrome]:
    """Headless chromium through its Debian driver (given by path, so Selenium Manager never
    tries to download one); skipped without it, a failure under CI."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        _missing_service(
            f"chromium not found ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium "
            "chromium-driver (scripts/bootstrap.sh does)"
        )
    pytest.importorskip("selenium")
    from selenium.webdriver import Chrome, ChromeOptions
    from selenium.webdriver.chrome.service import Service

    options = ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1366,900", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(flag)
    profile = REPO / "test-output" / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    options.add_argument(f"--user-data-dir={profile}")
    driver = Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
