"""The dashboard in a real browser (headless chromium): every page renders with its data and
charts, feedback typed into the form lands in the database, an admin promotes with a click and a
read-only user has no button to click, and the keyboard reaches the links and form fields in
order. Each page's screenshot is written to ``test-output/ui/``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.serving.app import create_app
from prognos.storage import repository
from tests.helpers.dashboard import Dashboard, served

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

pytestmark = pytest.mark.slow

TABLET = (820, 1180)  # an iPad Air, portrait
LAPTOP = (1366, 900)


@pytest.fixture(scope="module")
def url(dash: Dashboard) -> Iterator[str]:
    with served(create_app(dash.settings)) as base:
        yield base


def _wait(browser: Chrome, css: str, timeout: float = 20) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(browser, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def _sign_in(browser: Chrome, url: str, key: str, page: str = "/ui/") -> None:
    """Through the form, as a user would: type the key and press Enter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.delete_all_cookies()
    browser.get(f"{url}{page}")
    _wait(browser, "#api_key")
    browser.find_element(By.ID, "api_key").send_keys(key, Keys.ENTER)
    _wait(browser, "header nav")


def _shot(browser: Chrome, folder: Path, name: str, size: tuple[int, int] = LAPTOP) -> Path:
    """A screenshot of the whole page at ``size``'s width."""
    browser.set_window_size(*size)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(size[0], max(size[1], min(int(height) + 120, 6000)))
    path = folder / f"{name}.png"
    browser.save_screenshot(str(path))
    browser.set_window_size(*LAPTOP)
    assert path.stat().st_size > 10_000
    return path


def _charts_drawn(browser: Chrome, count: int) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(browser, 20).until(
        lambda b: len(b.find_elements("css selector", ".uplot canvas")) >= count
    )


def test_every_page_renders_with_data(
    browser: Chrome, url: str, dash: Dashboard, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{url}/ui/login")
    _wait(browser, "#api_key")
    _shot(browser, screenshots, "login")
    _sign_in(browser, url, dash.keys["admin"])
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet-rows tbody tr a")
    assert [r.text for r in rows] != [] and set(dash.assets) <= {r.text for r in rows}
    _shot(browser, screenshots, "fleet")
    _shot(browser, screenshots, "fleet-tablet", TABLET)

    browser.get(f"{url}/ui/assets/{dash.assets[0]}")
    _charts_drawn(browser, 4)  # probability, RUL, raw and normalised sensor
    assert browser.find_elements(By.CSS_SELECTOR, ".waterfall .step")
    assert "Report what happened" in browser.page_source
    _shot(browser, screenshots, "asset")
    _shot(browser, screenshots, "asset-tablet", TABLET)

    browser.get(f"{url}/ui/models")
    _wait(browser, "table")
    assert "champion" in browser.find_element(By.TAG_NAME, "main").text
    _shot(browser, screenshots, "models")

    browser.get(f"{url}/ui/monitoring")
    _charts_drawn(browser, 4)
    assert "Drift by column" in browser.page_source
    _shot(browser, screenshots, "monitoring")

    browser.get(f"{url}/ui/alerts")
    _wait(browser, "table")
    assert browser.find_elements(By.CSS_SELECTOR, "main .badge.firing, main .badge.pending")
    _shot(browser, screenshots, "alerts")

    browser.get(f"{url}/ui/plan")
    _wait(browser, "main h1")
    _shot(browser, screenshots, "plan")

    # The search filters the table in place (htmx), without a page load.
    browser.get(f"{url}/ui/")
    marker = browser.execute_script("window.__same = 1; return window.__same")
    browser.find_element(By.ID, "q").send_keys(dash.assets[2])
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(browser, 10).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#fleet-rows tbody tr a")) == 1
    )
    assert browser.execute_script("return window.__same") == marker  # the same page
    assert browser.find_element(By.CSS_SELECTOR, "#fleet-rows tbody tr a").text == dash.assets[2]


def test_feedback_typed_in_the_form_lands_in_the_database(
    browser: Chrome, url: str, dash: Dashboard, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    asset = dash.assets[1]
    _sign_in(browser, url, dash.keys["operator"], f"/ui/assets/{asset}")
    browser.find_element(By.ID, "fo-yes").click()
    browser.find_element(By.ID, "failure_cycle").send_keys("900")
    browser.find_element(By.ID, "failure_type").send_keys("seal leak")
    browser.find_element(By.ID, "notes").send_keys("found on the night shift")
    browser.find_element(By.CSS_SELECTOR, "#feedback button[type=submit]").click()
    _wait(browser, ".notice[role=status]")
    assert "found on the night shift" in browser.page_source
    _shot(browser, screenshots, "asset-feedback-recorded")
    db = dash.db()
    try:
        labels = repository.feedback_labels(db)
    finally:
        db.dispose()
    mine = labels[(labels["asset_id"] == asset) & (labels["failure_type"] == "seal leak")]
    assert len(mine) == 1
    assert mine.iloc[0]["failure_cycle"] == 900 and mine.iloc[0]["submitted_by"] == "operator"


def test_an_admin_promotes_and_a_read_only_user_cannot(
    browser: Chrome, url: str, dash: Dashboard
) -> None:
    from selenium.webdriver.common.by import By

    champion, other = dash.versions
    registry = connect(dash.settings)
    _sign_in(browser, url, dash.keys["read"], "/ui/models")
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action='/ui/models/promote']")
    assert "need an admin key" in browser.page_source

    _sign_in(browser, url, dash.keys["admin"], "/ui/models")
    promote = f"button[aria-label='Promote version {other} to champion']"
    browser.find_element(By.CSS_SELECTOR, promote).click()
    _notice(browser, "promoted")
    assert versions.champion(registry, "tiny").version == other  # type: ignore[union-attr]
    browser.find_element(By.CSS_SELECTOR, "form[action='/ui/models/rollback'] button").click()
    _notice(browser, "rolled back")
    assert versions.champion(registry, "tiny").version == champion  # type: ignore[union-attr]
    db = dash.db()
    try:
        newest = repository.audit_events(db, 1, action="champion_")[0]
    finally:
        db.dispose()
    assert (newest["action"], newest["actor"]) == ("champion_rollback", "ui:boss")


def _notice(browser: Chrome, text: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.wait import WebDriverWait

    # The page is replaced by the form's redirect meanwhile: a notice found on the old page goes
    # stale under us, so look again.
    WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda b: any(text in n.text for n in b.find_elements("css selector", ".notice"))
    )


def _focused(browser: Chrome) -> str:
    return str(
        browser.execute_script(
            "const e = document.activeElement;"
            "return e.id || e.getAttribute('name') || e.textContent.trim();"
        )
    )


def test_keyboard_reaches_links_and_fields_in_order_and_enter_submits(
    browser: Chrome, url: str, dash: Dashboard
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    def tab(times: int = 1) -> None:
        for _ in range(times):
            ActionChains(browser).send_keys(Keys.TAB).perform()

    browser.delete_all_cookies()
    browser.get(f"{url}/ui/login")
    _wait(browser, "#api_key")
    assert _focused(browser) == "api_key"  # autofocus: type the key, Enter signs in
    ActionChains(browser).send_keys(dash.keys["operator"], Keys.ENTER).perform()
    _wait(browser, "header nav")

    browser.get(f"{url}/ui/")  # a fresh page: the first Tab starts from its top
    _wait(browser, "#fleet-rows")
    seen = []
    for _ in range(12):
        tab()
        seen.append(_focused(browser))
    assert seen[:8] == [
        "Skip to content", "prognos", "Fleet", "Alerts", "Models", "Monitoring", "Plan",
        "Sign out",
    ]  # fmt: skip
    assert seen[8:12] == ["q", "risk", "inspect", "Filter"]
    tab()  # the riskiest asset's link; Enter follows it
    first = _focused(browser)
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    _wait(browser, "#feedback form")
    assert browser.current_url.endswith(f"/ui/assets/{first}")

    # The feedback form's fields in order (a radio group is one stop); Enter submits it.
    browser.find_element("id", "fo-no").click()
    order = []
    for _ in range(5):
        tab()
        order.append(_focused(browser))
    assert order == ["event", "failure_cycle", "failure_type", "notes", "Record feedback"]
    browser.find_element("id", "failure_type").send_keys(Keys.ENTER)
    _wait(browser, ".notice[role=status]")
