"""The dashboard's routes through TestClient: sign-in for a session cookie (flags, CSRF, scopes),
each page rendering the stored data, feedback landing in the database, an admin's promote moving
the alias with an audit row while a read-only key changes nothing, hostile text escaped."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.serving.app import create_app
from prognos.storage import alerts as alert_store
from prognos.storage import api_keys, repository
from prognos.storage import dashboard as dash_store
from tests.helpers.dashboard import Dashboard, sign_in

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def app_client(dash: Dashboard) -> Iterator[TestClient]:
    with TestClient(create_app(dash.settings), base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
def client(app_client: TestClient) -> Iterator[TestClient]:
    """The module's app with a clean cookie jar for each test."""
    app_client.cookies.clear()
    yield app_client
    app_client.cookies.clear()


def test_pages_need_a_session_and_send_to_sign_in(client: TestClient) -> None:
    response = client.get("/ui/models", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui/models"
    page = client.get("/ui/login")
    assert page.status_code == 200 and 'name="api_key"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_sign_in_sets_a_strict_httponly_cookie_without_the_key(
    client: TestClient, dash: Dashboard
) -> None:
    token = client.get("/ui/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    key = dash.keys["read"]
    response = client.post(
        "/ui/login", data={"api_key": key, "csrf_token": token, "next": "/ui/alerts"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == "/ui/alerts"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("prognos_session=")
    )
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags and "path=/ui" in flags
    assert "secure" not in flags  # plain http on 127.0.0.1; set over https (below)
    assert key not in cookie and key[3:11] not in cookie
    assert client.get("/ui/alerts").status_code == 200


def test_the_cookie_is_secure_over_https(dash: Dashboard, app_client: TestClient) -> None:
    # Not entered: the module's client runs the app's lifespan; this one only talks to it.
    secure = TestClient(app_client.app, base_url="https://127.0.0.1")
    token = secure.get("/ui/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    response = secure.post(
        "/ui/login", data={"api_key": dash.keys["read"], "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    cookie = next(c for c in response.headers.get_list("set-cookie") if "prognos_session" in c)
    assert "secure" in cookie.lower()


def test_a_wrong_key_or_a_forged_sign_in_form_is_refused(
    client: TestClient, dash: Dashboard
) -> None:
    token = client.get("/ui/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    wrong = client.post("/ui/login", data={"api_key": "pk_nope", "csrf_token": token})
    assert wrong.status_code == 401 and "Unknown or revoked" in wrong.text
    client.cookies.clear()  # no sign-in form was fetched: its CSRF cookie is missing
    forged = client.post("/ui/login", data={"api_key": dash.keys["admin"], "csrf_token": "x"})
    assert forged.status_code == 403
    assert "prognos_session" not in forged.headers.get("set-cookie", "")


def test_sign_out_ends_the_session(client: TestClient, dash: Dashboard) -> None:
    csrf = sign_in(client, dash.keys["read"])
    session = client.cookies["prognos_session"]
    out = client.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set("prognos_session", session, path="/ui")  # replaying the old cookie
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_each_page_renders_the_stored_data(client: TestClient, dash: Dashboard) -> None:
    sign_in(client, dash.keys["read"])
    fleet = client.get("/ui/")
    assert fleet.status_code == 200 and "Server-Timing" in fleet.headers
    for asset in dash.assets:
        assert f'href="/ui/assets/{asset}"' in fleet.text
    asset = client.get(f"/ui/assets/{dash.assets[1]}")
    assert asset.status_code == 200
    assert "borescope: fine" in asset.text  # its feedback
    assert 'id="history-data"' in asset.text and "sensor_2" in asset.text
    assert 'class="step ' in asset.text  # the explanation's waterfall
    models = client.get("/ui/models").text
    assert f"v{dash.versions[0]}" in models and f"v{dash.versions[1]}" in models
    assert "champion" in models
    monitoring = client.get("/ui/monitoring").text
    assert "Drift by column" in monitoring and 'id="chart-drift"' in monitoring
    alerts = client.get("/ui/alerts").text
    assert "asset_inspect" in alerts or "asset_rul_below_lead_time" in alerts
    plan = client.get("/ui/plan")
    assert plan.status_code == 200 and "Maintenance plan" in plan.text


def test_the_fleet_filters_and_pages_in_sql(client: TestClient, dash: Dashboard) -> None:
    sign_in(client, dash.keys["read"])
    rows = client.get("/ui/fleet/rows", params={"q": dash.assets[2]}).text
    assert f'href="/ui/assets/{dash.assets[2]}"' in rows
    assert f'href="/ui/assets/{dash.assets[0]}"' not in rows
    assert "1 matching asset" in rows
    db = dash.db()
    try:
        high = dash_store.fleet_page(db, dash_store.FleetFilter(risk="HIGH")).total
        page = dash_store.fleet_page(db, dash_store.FleetFilter(), offset=1, limit=1)
        everything = repository.latest_predictions(db)
    finally:
        db.dispose()
    assert f"{high} matching asset" in client.get("/ui/fleet/rows", params={"risk": "HIGH"}).text
    assert page.total == len(everything) == len(dash.assets)
    assert page.rows[0]["id"] == everything[1]["id"]  # ranked as GET /assets ranks
    assert all(page.last_received.values())


def test_hostile_search_and_notes_are_escaped(client: TestClient, dash: Dashboard) -> None:
    csrf = sign_in(client, dash.keys["operator"])
    rows = client.get("/ui/fleet", params={"q": HOSTILE}).text
    assert HOSTILE not in rows and "&lt;script&gt;" in rows
    asset = dash.assets[0]
    form = {"csrf_token": csrf, "failure_occurred": "no", "notes": HOSTILE}
    assert client.post(f"/ui/assets/{asset}/feedback", data=form).status_code == 200
    page = client.get(f"/ui/assets/{asset}").text
    assert HOSTILE not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_feedback_from_the_form_lands_in_the_database(client: TestClient, dash: Dashboard) -> None:
    csrf = sign_in(client, dash.keys["operator"])
    asset = dash.assets[2]
    page = client.get(f"/ui/assets/{asset}").text
    prediction = page.split('name="prediction_id" value="')[1].split('"')[0]
    form = {
        "csrf_token": csrf, "prediction_id": prediction, "failure_occurred": "yes",
        "failure_cycle": "400", "failure_type": "bearing", "notes": "seized at 400",
    }  # fmt: skip
    response = client.post(f"/ui/assets/{asset}/feedback", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    db = dash.db()
    try:
        labels = repository.feedback_labels(db)
    finally:
        db.dispose()
    row = labels[labels["prediction_id"] == prediction].iloc[-1]
    assert (row["asset_id"], row["failure_cycle"], row["failure_type"]) == (asset, 400, "bearing")
    assert row["failure_occurred"] and row["submitted_by"] == "operator"
    # The API's own checks apply: a failure before the judged reading is refused, by name.
    form.update(failure_cycle="1")
    refused = client.post(f"/ui/assets/{asset}/feedback", data=form)
    assert refused.status_code == 422 and "failure_cycle" in refused.text


def test_forms_need_the_session_csrf_token_and_scope(client: TestClient, dash: Dashboard) -> None:
    sign_in(client, dash.keys["read"])
    asset = dash.assets[0]
    page = client.get(f"/ui/assets/{asset}").text
    assert "may read but not report outcomes" in page  # no form without ingest
    form = {"csrf_token": "forged", "failure_occurred": "no"}
    assert client.post(f"/ui/assets/{asset}/feedback", data=form).status_code == 403
    csrf = sign_in(client, dash.keys["read"])
    form["csrf_token"] = csrf
    assert client.post(f"/ui/assets/{asset}/feedback", data=form).status_code == 403
    foreign = client.post(
        f"/ui/assets/{asset}/feedback", data=form, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403


def test_an_admin_promotes_and_a_read_only_user_cannot(client: TestClient, dash: Dashboard) -> None:
    champion, other = dash.versions
    registry = connect(dash.settings)
    csrf = sign_in(client, dash.keys["read"])
    assert "/ui/models/promote" not in client.get("/ui/models").text
    denied = client.post("/ui/models/promote", data={"csrf_token": csrf, "version": str(other)})
    assert denied.status_code == 403
    assert versions.champion(registry, "tiny").version == champion  # type: ignore[union-attr]

    csrf = sign_in(client, dash.keys["admin"])
    assert "/ui/models/promote" in client.get("/ui/models").text
    moved = client.post(
        "/ui/models/promote", data={"csrf_token": csrf, "version": str(other)},
        follow_redirects=False,
    )  # fmt: skip
    assert moved.status_code == 303
    assert versions.champion(registry, "tiny").version == other  # type: ignore[union-attr]
    back = client.post("/ui/models/rollback", data={"csrf_token": csrf}, follow_redirects=False)
    assert back.status_code == 303
    assert versions.champion(registry, "tiny").version == champion  # type: ignore[union-attr]
    db = dash.db()
    try:
        events = repository.audit_events(db, 2, action="champion_")
    finally:
        db.dispose()
    assert [(e["action"], e["actor"], e["details"]) for e in events] == [
        ("champion_rollback", "ui:boss", {"from": other, "to": champion}),
        ("champion_promote", "ui:boss", {"from": champion, "to": other}),
    ]


def test_acknowledging_an_alert_is_audited(client: TestClient, dash: Dashboard) -> None:
    db = dash.db()
    try:
        active = alert_store.list_alerts(db)
        assert active, "the stocked dashboard has alerts"
        target = active[0]["id"]
        csrf = sign_in(client, dash.keys["read"])
        url = f"/ui/alerts/{target}/acknowledge"
        assert client.post(url, data={"csrf_token": csrf}).status_code == 403
        assert alert_store.acknowledgements(db, [target]) == {}
        csrf = sign_in(client, dash.keys["operator"])
        acked = client.post(url, data={"csrf_token": csrf}, follow_redirects=False)
        assert acked.status_code == 303
        assert alert_store.acknowledgements(db, [target])[target]["actor"] == "ui:operator"
        assert "ui:operator" in client.get("/ui/alerts").text
    finally:
        db.dispose()


def test_a_revoked_key_ends_its_sessions(client: TestClient, dash: Dashboard) -> None:
    db = dash.db()
    try:
        key, _ = api_keys.create_api_key(db, "temp-viewer", ["read"])
        sign_in(client, key)
        assert client.get("/ui/alerts", follow_redirects=False).status_code == 200
        api_keys.revoke_api_key(db, "temp-viewer")
    finally:
        db.dispose()
    time.sleep(1.1)  # the revoked keys are read at most once a second
    assert client.get("/ui/alerts", follow_redirects=False).status_code == 303
