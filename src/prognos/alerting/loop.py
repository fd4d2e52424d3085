"""The service's alert evaluator: the rules evaluated every ``alert_evaluate_seconds`` on a
thread of its own (never the event loop), notifications delivered by a :class:`Dispatcher`.

A failed evaluation (the database down) is logged once per outage and tried again at the next
tick; the thread never dies of it. Several workers may each run one: evaluations are serialised
in the database (:func:`prognos.storage.alerts.alert_transaction`), so an alert fires once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from prognos.alerting.evaluate import Evaluation, evaluate
from prognos.alerting.notify import Dispatcher, build_notifiers
from prognos.alerting.rules import RuleSet, load_rules
from prognos.config import Settings
from prognos.errors import PrognosError
from prognos.storage.database import Database

__all__ = ["AlertLoop"]

log = logging.getLogger("prognos.alerts")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertLoop:
    """``start()`` loads the rules (a bad file fails here, at start-up) and starts the thread;
    ``stop()`` ends it and delivers what is queued for a few seconds."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        rules: RuleSet | None = None,
        dispatcher: Dispatcher | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.db = db
        self.rules = rules
        self.dispatcher = dispatcher
        self.clock = clock
        self.interval = settings.alert_evaluate_seconds
        self.last: Evaluation | None = None
        self.last_error: str | None = None
        self.evaluations = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        if self.rules is None:
            self.rules = load_rules(self.settings)
        if self.dispatcher is None:
            self.dispatcher = Dispatcher(build_notifiers(self.settings))
        self.dispatcher.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="prognos-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.dispatcher is not None:
            self.dispatcher.stop(timeout)

    def run_once(self) -> Evaluation | None:
        """One evaluation now; None (and ``last_error`` set) when it failed."""
        if self.rules is None:
            self.rules = load_rules(self.settings)
        try:
            evaluation = evaluate(
                self.settings, self.db, self.rules, now=self.clock(), dispatcher=self.dispatcher
            )
        except PrognosError as exc:
            if self.last_error is None:
                log.warning(
                    "alert evaluation failed (retried every %.0f s): %s", self.interval, exc
                )
            self.last_error = str(exc)
            return None
        if self.last_error is not None:
            log.info("alert evaluation works again")
        self.last, self.last_error = evaluation, None
        self.evaluations += 1
        return evaluation

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a bug, not an outage: say so, and keep evaluating
                log.exception("alert evaluation crashed")
            self._stop.wait(self.interval)
