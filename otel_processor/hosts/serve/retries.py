"""Recognising a sender's retry, so that a batch is neither learnt from twice nor sent twice.

A sender retries a batch only after the service refused it (UNAVAILABLE / 503). The service
remembers the digest of each refused batch's bytes, for a while and a bounded number of them:

- refused because downstream failed: the retry is processed and forwarded again, but the engine
  does not learn from it a second time (its records are enriched with current trust);
- refused because downstream was slow: the export was left running; if it completed, the retry
  is acknowledged without being sent again, and if it is still running the retry waits for it;
- delivered after the sender's gRPC deadline had passed (the sender counts it as failed): the
  retry is acknowledged without being processed or sent again.

Digests are only computed while something is remembered, so the common path pays nothing.
BLAKE2b: a crafted collision would let a batch slip past the engine, so a CRC will not do.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

FAILED, PENDING, DELIVERED = "failed", "pending", "delivered"


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class RetryMemory:
    def __init__(self, capacity: int = 4096, ttl_s: float = 900.0):
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._entries: OrderedDict[bytes, tuple[str, object, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self._entries)

    def remember(self, key: bytes, state: str, future=None) -> None:
        with self._lock:
            self._entries[key] = (state, future, time.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        if future is not None:
            future.add_done_callback(lambda f: self._settle(key, f))

    def _settle(self, key: bytes, future) -> None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[1] is future:
                self._entries[key] = (DELIVERED if future.result() else FAILED, None, found[2])

    def lookup(self, key: bytes, wait_s: float) -> str | None:
        """FAILED, DELIVERED or None (not a retry we know); waits up to ``wait_s`` for a pending one."""
        with self._lock:
            self._expire()
            found = self._entries.get(key)
        if found is None:
            return None
        state, future, _ = found
        if state == PENDING:
            try:
                state = DELIVERED if future.result(timeout=wait_s) else FAILED
            except TimeoutError:
                return PENDING
        return state

    def forget(self, key: bytes) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        while self._entries:
            key, (_, _, at) = next(iter(self._entries.items()))
            if at >= cutoff:
                return
            self._entries.popitem(last=False)
