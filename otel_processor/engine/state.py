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
    single-document format), or raises StateError and leaves the engine as it was.

    A snapshot is a file anyone with write access to the state directory can edit, so it is
    checked before it is used: loaded into a scratch engine, every table must come back out
    exactly as it went in (what the engine did not write does not), then the scratch engine
    processes a probe record for each of up to ``PROBED`` identities and for a new one. Only
    then is the snapshot loaded into the engine."""
    with paused_gc():
        tables = _parse(path)
        if "v1" in tables:  # the single-document format
            return _restore_v1(engine, path, tables["v1"], Profile)
        scratch = engine.scratch()
        _apply(scratch, path, tables, Profile, check=True)
        _probe(scratch, path)
        _apply(engine, path, tables, Profile, check=False)


PROBED = 2000
_TABLES = ("chain", "credentials", "credential_facts", "grants", "pending", "evictions")


def _parse(path: str) -> dict:
    """The snapshot's lines as decoded JSON, per table, with the line each came from (a version 1
    snapshot: its one document, as ``{"v1": ...}``)."""
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
                return {"v1": head}
            if not isinstance(head, dict) or head.get("version") != STATE_VERSION:
                version = head.get("version") if isinstance(head, dict) else None
                raise StateError(path, f"state version {version!r} is not {STATE_VERSION}, or not a snapshot at all")
            tables: dict = {"profiles": [], "peers": [], "end": None}
            for number, line in enumerate(fh, 2):
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise StateError(path, f"line {number} is not JSON ({exc})") from None
                if not isinstance(entry, dict) or len(entry) not in (1, 2):
                    raise StateError(path, f"line {number} is not a table the engine writes")
                if "profiles" in entry and isinstance(entry["profiles"], list):
                    tables["profiles"] += [(number, state) for state in entry["profiles"]]
                elif "peers" in entry:
                    tables["peers"].append((number, entry["peers"]))
                elif "end" in entry and isinstance(entry["end"], dict):
                    tables["end"] = entry["end"]
                elif set(entry) <= set(_TABLES):
                    for key, value in entry.items():
                        tables[key] = (number, value)
                else:
                    raise StateError(path, f"line {number} holds {', '.join(sorted(map(str, entry)))[:80]}: "
                                           f"not a table the engine writes")
    except StateError:
        raise
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise StateError(path, f"not a readable gzip snapshot ({exc})") from None
    end = tables["end"]
    if end is None or end.get("profiles") != len(tables["profiles"]):
        raise StateError(path, "truncated: it ends before its last line")
    return tables


def _identity_ok(identity) -> bool:
    from ..model import IDENTITY_KINDS

    return (all(isinstance(v, str) and v for v in (identity.id, identity.kind, identity.principal))
            and identity.kind in IDENTITY_KINDS and identity.id.startswith(identity.kind + ":"))


def _same(state, written) -> bool:
    """A table as the engine holds it, encoded as the snapshot encodes it, is what was read
    (the encodings compared first: equal bytes are the common, cheap case)."""
    encoded = orjson.dumps(state)
    return encoded == orjson.dumps(written) or orjson.loads(encoded) == written


def _apply(engine, path: str, tables: dict, Profile, check: bool) -> None:  # noqa: N803
    """Builds every table from the snapshot; with ``check``, each must come back out unchanged
    (anything that raises while it is built is a StateError naming the line)."""
    profiles = []
    where = "a profile"
    try:
        seen = set()
        for number, state in tables["profiles"]:
            where = f"line {number} (a profile)"
            p = Profile.from_state(state)
            if check and (p.identity.id in seen or not _identity_ok(p.identity) or not _same(p.state(), state)):
                raise ValueError("not as the engine writes it")
            seen.add(p.identity.id)
            profiles.append(p)
        groups = [state for _, state in tables["peers"]]
        values = {key: tables[key][1] for key in _TABLES if key in tables}
        where = "the tables"
        with engine._lock:
            _install(engine, profiles, groups, values.get("chain", [[], []]), values.get("credentials", []),
                     values.get("pending", []), values.get("evictions", {}))
            engine._credential_book.restore(values.get("credential_facts", []))
            engine._grants.restore(values.get("grants", [[], [], []]))
        if check:
            for number, state in tables["peers"]:
                where = f"line {number} (a peer group)"
                if not isinstance(state, list) or not state or not _same(
                        engine._peers.group_state(state[0]), state):
                    raise ValueError("not as the engine writes it")
            held = {"chain": engine._chain.state(), "credentials": engine._credentials.state(),
                    "credential_facts": engine._credential_book.state(), "grants": engine._grants.state(),
                    "pending": engine._pending, "evictions": engine._roster.evicted}
            for key in _TABLES:
                if key in tables:
                    where = f"line {tables[key][0]} ({key})"
                    if not _same(held[key], tables[key][1]):
                        raise ValueError("not as the engine writes it")
    except StateError:
        raise
    except (MemoryError, RecursionError) as exc:
        raise StateError(path, f"{where} cannot be read ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - whatever a crafted table makes the engine raise
        raise StateError(path, f"{where} cannot be used ({type(exc).__name__}: {str(exc)[:120]})") from None


def _probe(engine, path: str) -> None:
    """Records for up to PROBED restored identities and for a new one, on the scratch engine:
    a state that loads but would make records fail is refused here, not met by every record."""
    from ..model import Identity, Observation

    items = engine._roster.items()
    step = max(1, len(items) // PROBED)
    identities = [p.identity for _, p in items[::step]]
    identities.append(Identity("workload:probe", "workload", "probe", "service.name"))
    # the credentials the cross-identity tables hold, each used once by the new identity
    credentials = [k for table in (engine._credentials.older, engine._credentials.recent) for k in table
                   if isinstance(k, str)][:PROBED]
    latest = max((p.last_ns for _, p in items if isinstance(p.last_ns, int)), default=0)
    for k, identity in enumerate(identities):
        for j, (action, address) in enumerate(_PROBES):
            _probe_one(engine, path, str(identity.id)[:120], Observation(
                identity, latest + (k * len(_PROBES) + j) * 1_000_000, "app", action, target="probe",
                source_address=address, user_agent="probe/1.0", trace_id=(k + 1).to_bytes(16, "big"),
                span_id=(j + 1).to_bytes(8, "big"), details={
                    "nhi.credential.id": "probe-credential", "aws.session": "arn:aws:sts::0:assumed-role/probe/i-0probe"}))
    probe = identities[-1]
    for k, key in enumerate(credentials):
        details = {"aws.session": key} if key.startswith("arn:") else {"aws.access_key.id": key, "nhi.credential.id": key}
        _probe_one(engine, path, f"credential {key[:40]}", Observation(
            probe, latest + (len(identities) * len(_PROBES) + k) * 1_000_000, "app", _PROBES[0][0], target="probe",
            source_address="198.51.100.1", user_agent="probe/1.0", trace_id=(k + 1).to_bytes(16, "big"),
            span_id=b"\0" * 7 + b"\1", details=details))
    try:
        engine.take_events()
    except Exception as exc:  # noqa: BLE001
        raise StateError(path, f"its incidents cannot be reported ({type(exc).__name__})") from None


def _probe_one(engine, path: str, who: str, o) -> None:
    try:
        engine.observe(o)
    except Exception as exc:  # noqa: BLE001 - what a crafted table makes a record raise
        raise StateError(path, f"{who}: its state makes records fail ({type(exc).__name__}: {str(exc)[:120]})") from None


_PROBES = (("secretsmanager.amazonaws.com/GetSecretValue", "10.0.0.1"),
           ("iam.amazonaws.com/CreateAccessKey", "198.51.100.1"),
           ("sts.amazonaws.com/AssumeRole", "10.0.0.2"))


def _restore_v1(engine, path, data, Profile) -> None:
    """The single-document format of the first releases, read as it was (no check beyond it)."""
    try:
        profiles = [Profile.from_state(s) for s in data["profiles"]]
        for p in profiles:
            p.tier = 1
        groups = data["peers"]
        with engine._lock:
            _install(engine, profiles, groups, data["chain"], data.get("credentials", []), data.get("pending", []),
                     {"settled": data.get("evictions", 0)})
    except Exception as exc:  # noqa: BLE001 - whatever a crafted file makes the engine raise
        raise StateError(path, f"a profile cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from None


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
