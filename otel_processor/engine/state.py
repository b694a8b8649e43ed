"""Engine state on disk: snapshots that never stall ingestion, restores that fail clearly.

Format (version 2): gzip-compressed JSON lines, nothing executable. A header line, one line per
chunk of identities (``{"profiles": [...]}``), one per peer group, then the cross-identity
tables, then an end line with the counts, so that a truncated file is recognised as such.
orjson encodes and decodes it: 200,000 identities are written in a few seconds, within the
shutdown grace, where the standard library took about twenty.

Writing takes the engine lock only for a chunk of identities at a time (a few milliseconds), so
batches keep flowing while a snapshot is written; each identity's state is consistent, and the
snapshot as a whole spans the time it took to write (a fuzzy checkpoint). The file is written
beside the target, flushed and fsynced, then atomically renamed over it and the directory
fsynced: a crash leaves the previous snapshot or the new one, never half of one. What a
``kill -9`` loses is what was learnt since the last snapshot (``snapshot_interval_s``).
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import os
import time
import zlib

import orjson

STATE_VERSION = 2
CHUNK = 500  # identities serialised per lock acquisition (a few milliseconds)


class StateError(ValueError):
    """A snapshot that cannot be used. The message names the file, what is wrong and what to do."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}; start fresh with --reset-state (moves the file aside) or remove it")
        self.path = path
        self.problem = problem


@contextlib.contextmanager
def paused_gc():
    """Snapshots make and restores keep hundreds of thousands of objects without cycles; the
    cyclic collector scanning all of them repeatedly doubled the time. Paused, then frozen:
    what a restore built is not scanned again (see ``gc.freeze``)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
        gc.freeze()


def _dump(obj) -> bytes:
    return orjson.dumps(obj) + b"\n"


def write_snapshot(engine, path: str, deadline: float | None = None) -> bool:
    with paused_gc():
        return _write(engine, path, deadline)


def _write(engine, path: str, deadline: float | None) -> bool:
    tmp = f"{path}.tmp"
    roster = engine._roster
    with engine._lock:
        items = roster.items()
    written = 0
    try:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as out:
                out.write(_dump({"version": STATE_VERSION, "written_at": time.time()}))
                for start in range(0, len(items), CHUNK):
                    with engine._lock:  # states reference live lists: encoded before the lock is let go
                        states = [p.state() for key, p in items[start:start + CHUNK] if roster.peek(key) is p]
                        line = _dump({"profiles": states})
                    out.write(line)
                    written += len(states)
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError
                with engine._lock:
                    groups = list(engine._peers._groups)
                for name in groups:
                    with engine._lock:
                        group = engine._peers.group_state(name)
                    if group is not None:
                        out.write(_dump({"peers": group}))
                with engine._lock:
                    tail = [_dump({"chain": engine._chain.state()}), _dump({"credentials": engine._credentials.state()}),
                            _dump({"credential_facts": engine._credential_book.state()}),
                            _dump({"grants": engine._grants.state()}),
                            _dump({"pending": engine._pending, "evictions": roster.evicted})]
                out.write(b"".join(tail))
                out.write(_dump({"end": {"profiles": written}}))
            raw.flush()
            os.fsync(raw.fileno())
    except TimeoutError:
        os.unlink(tmp)
        return False
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return True


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_snapshot(engine, path: str, Profile) -> None:  # noqa: N803 - the engine's Profile class
    """Replaces the engine's state with the snapshot at ``path`` (version 2, or the version 1
    single-document format), or raises StateError and leaves the engine as it was."""
    with paused_gc():
        _read(engine, path, Profile)


def _read(engine, path: str, Profile) -> None:  # noqa: N803
    try:
        with gzip.open(path, "rb") as fh:
            first = fh.readline()
            if not first.strip():
                raise StateError(path, "empty file, not a snapshot")
            try:
                head = orjson.loads(first)
            except orjson.JSONDecodeError:
                head = None
            if isinstance(head, dict) and head.get("version") == 1 and "profiles" in head:
                return _restore_v1(engine, path, head, Profile)
            if not isinstance(head, dict) or head.get("version") != STATE_VERSION:
                version = head.get("version") if isinstance(head, dict) else None
                raise StateError(path, f"state version {version!r} is not {STATE_VERSION}, or not a snapshot at all")
            profiles, groups, tables, end = [], [], {}, None
            for number, line in enumerate(fh, 2):
                try:
                    entry = orjson.loads(line)
                    if "profiles" in entry:
                        profiles += [Profile.from_state(s) for s in entry["profiles"]]
                    elif "peers" in entry:
                        groups.append(entry["peers"])
                    elif "end" in entry:
                        end = entry["end"]
                    else:
                        tables.update(entry)
                except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
                    raise StateError(path, f"line {number} cannot be read ({type(exc).__name__}: {exc})") from None
    except StateError:
        raise
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise StateError(path, f"not a readable gzip snapshot ({exc})") from None
    if end is None or end.get("profiles") != len(profiles):
        raise StateError(path, "truncated: it ends before its last line")
    with engine._lock:
        _install(engine, profiles, groups, tables.get("chain", [[], []]), tables.get("credentials", []),
                 tables.get("pending", []), tables.get("evictions", {}))
        engine._credential_book.restore(tables.get("credential_facts", []))
        engine._grants.restore(tables.get("grants", [[], [], []]))


def _restore_v1(engine, path, data, Profile) -> None:
    try:
        profiles = [Profile.from_state(s) for s in data["profiles"]]
        for p in profiles:
            p.tier = 1
        groups = data["peers"]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise StateError(path, f"a profile cannot be read ({type(exc).__name__}: {exc})") from None
    with engine._lock:
        _install(engine, profiles, groups, data["chain"], data.get("credentials", []), data.get("pending", []),
                 {"settled": data.get("evictions", 0)})


def _install(engine, profiles, groups, chain, credentials, pending, evictions) -> None:
    import heapq

    roster = engine._roster
    roster.clear()
    for p in profiles:
        roster.put(p.identity.id, p)
    engine._peers.restore(groups)
    engine._chain.restore(chain)
    engine._credentials.restore(credentials)
    engine._credential_book.restore([])
    engine._pending = [tuple(x) for x in pending]
    heapq.heapify(engine._pending)
    if isinstance(evictions, dict):
        roster.evicted.update({k: int(v) for k, v in evictions.items() if k in roster.evicted})
