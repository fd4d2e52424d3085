"""``prognos demo``'s live step: a short stream of new assets through the ingestion core, with
a sensor fault on some of them, and the drift monitor telling the fault from the fleet's aging."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from prognos.cli._common import CliState

if TYPE_CHECKING:
    from prognos.monitoring.drift import DriftResult

LIVE_FLEET = "demo-live"
LIVE_ASSETS = 20
LIVE_READINGS = 120
# Offset on assets 1-10 from their 60th reading, 1.5 standard deviations: small enough to stay
# within the sensor's plausible range (3 pushes readings out of it: dead letters, not drift).
FAULT = "offset:1-10:60:1.5"
FAULT_FROM = 60


def live_stream(state: CliState, seed: int) -> None:
    """Stream, store and score new assets; then judge drift before and after the fault began."""
    from prognos.data.faults import parse_fault
    from prognos.monitoring.profile import load_profile
    from prognos.registry import versions
    from prognos.registry.tracking import connect
    from prognos.storage.database import Database, database_url
    from prognos.storage.history import readings_tail
    from prognos.streaming.run import StreamPlan, run_stream

    out = state.out
    out.rule(f"8. Live stream with a fault ({escape(FAULT)}) and drift monitoring")
    settings = state.settings.model_copy(update={"model_name": "demo", "fleet": LIVE_FLEET})
    plan = StreamPlan(
        assets=LIVE_ASSETS,
        readings=LIVE_READINGS,
        faults=(parse_fault(FAULT),),
        seed=seed + 2000,
    )
    with state.err.status("Publishing and ingesting") as status:
        summary = run_stream(settings, plan, say=lambda line: status.update(escape(line)))
    for line in summary.lines():
        out.print(escape(line), soft_wrap=True)
    if summary.dead_letters:
        out.print(
            "dead letters are readings validation refused (late in life the shifted sensor leaves "
            "its plausible range), kept in the dead_letters table with reason and payload",
            soft_wrap=True,
        )

    champion = versions.champion(connect(settings), "demo")
    if champion is None:
        out.print("[yellow]no champion to monitor against[/]")
        return
    profile = load_profile(settings, "demo", str(champion.version))
    db = Database(database_url(settings))
    try:
        frame, _ = readings_tail(db, LIVE_READINGS, LIVE_FLEET)
    finally:
        db.dispose()
    from prognos.monitoring.drift import detect_drift

    before = detect_drift(profile, frame[frame["time"] < FAULT_FROM])
    after = detect_drift(profile, frame[frame["time"] >= FAULT_FROM])
    out.print(_table(before, after))
    out.print(
        "the healthy window only aged (compared within operating regime and health stage); "
        "after the fault the shifted sensor stands out: "
        f"{'[green]detected[/]' if after.drift_detected else '[red]not detected[/]'}",
        soft_wrap=True,
    )
    out.print(
        f"  prognos monitor run --model demo --fleet {LIVE_FLEET} --home {settings.home}",
        soft_wrap=True,
        highlight=False,
    )


def _table(before: DriftResult, after: DriftResult) -> Table:
    table = Table(title="Drift of the live stream against the model's reference profile")
    table.add_column("window")
    table.add_column("readings", justify="right")
    table.add_column("drift", justify="right")
    table.add_column("drifted columns")
    for name, result in (
        (f"readings 1-{FAULT_FROM - 1} (no fault)", before),
        (f"readings {FAULT_FROM}-{LIVE_READINGS} (fault on assets 1-10)", after),
    ):
        drifted = [n for n, c in result.columns.items() if c.drifted]
        table.add_row(
            name,
            f"{result.rows:,}",
            "yes" if result.drift_detected else "no",
            escape(", ".join(drifted[:6]) or "-"),
        )
    return table
