"""Engine state on disk: snapshots that never stall ingestion, restores that fail clearly.

Format (version 2): gzip-compressed JSON lines, nothing executable. A header line, one line per
identity (``{"profile": ...}``), one per peer group, then the cross-identity tables, then an end
line with the counts, so that a truncated file is recognised as such.

Writing takes the engine lock only for a chunk of identities at a time (a few milliseconds), so
batches keep flowing while a snapshot is written; each identity's state is consistent, and the
snapshot as a whole spans the time it took to write (a fuzzy checkpoint). The file is written
beside the target, flushed and fsynced, then atomically renamed over it and the directory
fsynced: a crash leaves the previous snapshot or the new one, never half of one. What a
``kill -9`` loses is what was learnt since the last snapshot (``snapshot_interval_s``).
"""

from __future__ import annotations

import gzip
import json
import os
import time
import zlib

STATE_VERSION = 2
CHUNK = 250  # identities serialised per lock acquisition


class StateError(ValueError):
    """A snapshot that cannot be used. The message names the file, what is wrong and what to do."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}; start fresh with --reset-state (moves the file aside) or remove it")
        self.path = path
        self.problem = problem


def _dump(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def write_snapshot(engine, path: str, deadline: float | None = None) -> bool:
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
                    with engine._lock:
                        lines = [_dump({"profile": p.state()}) for key, p in items[start:start + CHUNK]
                                 if roster.peek(key) is p]
                    out.write(b"".join(lines))
                    written += len(lines)
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
    try:
        with gzip.open(path, "rb") as fh:
            first = fh.readline()
            if not first.strip():
                raise StateError(path, "empty file, not a snapshot")
            try:
                head = json.loads(first)
            except ValueError:
                head = None
            if isinstance(head, dict) and head.get("version") == 1 and "profiles" in head:
                return _restore_v1(engine, path, head, Profile)
            if not isinstance(head, dict) or head.get("version") != STATE_VERSION:
                version = head.get("version") if isinstance(head, dict) else None
                raise StateError(path, f"state version {version!r} is not {STATE_VERSION}, or not a snapshot at all")
            profiles, groups, tables, end = [], [], {}, None
            for number, line in enumerate(fh, 2):
                try:
                    entry = json.loads(line)
                    if "profile" in entry:
                        profiles.append(Profile.from_state(entry["profile"]))
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
    engine._pending = [tuple(x) for x in pending]
    heapq.heapify(engine._pending)
    if isinstance(evictions, dict):
        roster.evicted.update({k: int(v) for k, v in evictions.items() if k in roster.evicted})
