"""What every host does with the events a batch decided, before they are exported: exceptions
(outputs/exceptions.py) keep expected ones back and count them, each event sent or kept back is
logged on one line, and the request is encoded in the configured body format.

Both hosts (``serve`` and the Rotel processor) hold one; ``reload()`` (SIGHUP) reads the
exceptions file anew and keeps the old list when the new one is wrong.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..config import ProcessorConfig
from ..errors import ConfigError
from ..model import ConvergenceEvent
from ..outputs.events import events_request, severity_band
from ..outputs.exceptions import ExceptionList, load_exceptions

log = logging.getLogger("otel_processor.events")

DAY_S = 86_400
HELD_KEPT = 1000


class EventGate:
    def __init__(self, config: ProcessorConfig, suppressed: Callable[[str, int], None] | None = None):
        """``suppressed(exception_id, n)``: counts events kept back (a metric of the host's)."""
        self.config = config
        self._count = suppressed or (lambda _id, _n: None)
        self._lock = threading.Lock()
        self.suppressed: dict[str, int] = {}
        # The latest events kept back, with the exception's id: what ``nhi-sim bench
        # --exceptions`` checks against the attacks it replayed.
        self.held: deque[tuple[ConvergenceEvent, str]] = deque(maxlen=HELD_KEPT)
        self.exceptions = load_exceptions(config.exceptions) if config.exceptions else ExceptionList()
        self._expired_logged_at = 0.0
        self.log_expired()

    def reload(self) -> bool:
        """Reads the exceptions file anew; False (old list kept, reason logged) when it is wrong."""
        if not self.config.exceptions:
            return True
        try:
            fresh = load_exceptions(self.config.exceptions)
        except ConfigError as exc:
            log.error("exceptions not reloaded, the previous %d stay in force: %s", len(self.exceptions.exceptions), exc)
            return False
        with self._lock:
            self.exceptions = fresh
        log.info("exceptions reloaded from %s: %d in force", self.config.exceptions, len(fresh.exceptions))
        self.log_expired(force=True)
        return True

    def log_expired(self, now: float | None = None, force: bool = False) -> None:
        """At start-up, on reload and then at most daily (wall clock): every expired exception,
        so that its owner renews or drops it."""
        now = time.time() if now is None else now
        if not force and self._expired_logged_at and now - self._expired_logged_at < DAY_S:
            return
        self._expired_logged_at = now
        for entry in self.exceptions.expired(dt.datetime.fromtimestamp(now, dt.timezone.utc)):
            log.warning("exception %s expired on %s and no longer applies (owner %s): renew it or remove it",
                        entry.id, entry.expires_at.isoformat(), entry.owner)

    def admit(self, events: Sequence[ConvergenceEvent]) -> list[ConvergenceEvent]:
        """The events to export; the others are counted per exception and logged."""
        if not events:
            return []
        self.log_expired()
        with self._lock:
            kept, held = self.exceptions.split(events)
        for event, entry in held:
            self.held.append((event, entry.id))
            self.suppressed[entry.id] = self.suppressed.get(entry.id, 0) + 1
            self._count(entry.id, 1)
            log.info("convergence event suppressed by exception %s (owner %s): %s", entry.id, entry.owner,
                     _summary(event), extra={"fields": {**_fields(event), "nhi.exception.id": entry.id}})
        for event in kept:
            log.info("convergence event %s: %s", "raised" if event.version == 1 else "updated", _summary(event),
                     extra={"fields": _fields(event)})
        return kept

    def request(self, events: Sequence[ConvergenceEvent]):
        return events_request(events, self.config.events.service_name, self.config.events.format)


def _fields(event: ConvergenceEvent) -> dict:
    """An event's facts as fields of its log line (the event's own attribute names)."""
    return {"nhi.convergence.id": event.convergence_id, "nhi.convergence.version": event.version,
            "nhi.identity.id": event.identity.id, "nhi.convergence.score": round(event.score, 2),
            "nhi.convergence.severity": severity_band(event.score), "security_rule.name": event.rule_name}


def _summary(event: ConvergenceEvent) -> str:
    return (f"id={event.convergence_id} version={event.version} identity={event.identity.id} "
            f"score={event.score:.2f} severity={severity_band(event.score)} rule={event.rule_name!r}")
