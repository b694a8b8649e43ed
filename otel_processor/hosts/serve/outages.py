"""Downstream outages, said once when they start, once a minute while they last, once when they end."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)
REMIND_EVERY_S = 60.0


class OutageLog:
    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._since: float | None = None
        self._refused = 0
        self._reminded = 0.0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failure(self, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._refused += 1
            if self._since is None:
                self._since = self._reminded = now
                log.warning("%s: outage started: %s; batches are refused as retryable until it ends",
                            self.name, reason)
            elif now - self._reminded >= REMIND_EVERY_S:
                self._reminded = now
                log.warning("%s: outage continues for %.0f s, %d batches refused so far: %s",
                            self.name, now - self._since, self._refused, reason)

    def success(self) -> None:
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            log.warning("%s: outage ended after %.0f s; %d batches were refused as retryable meanwhile",
                        self.name, time.monotonic() - self._since, self._refused)
            self._since, self._refused = None, 0
