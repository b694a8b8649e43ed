"""Snapshots that are well formed but hostile (engine/state.py): a snapshot is JSON lines anyone
with write access to the state directory can edit. Whatever a table holds, loading it either
says what is wrong in one StateError (``serve`` exits 2 naming ``--reset-state``), or gives an
engine that processes every identity's records without failing. Hypothesis mutates a real
snapshot (incidents, first-sight state, peers, chains, credentials, grants) one value at a time."""

from __future__ import annotations

import functools
import os
import gzip
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from otel_processor.engine import Engine, EngineConfig
from otel_processor.engine.state import StateError

from observations import D, H, S, T0, history, ident, obs, sweep

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.just(-1), st.just(0), st.just(2 ** 63), st.just(2 ** 70), st.just(-(2 ** 64)),
    st.just(1e308), st.just(float("-inf")) .map(lambda _: -1e308), st.just(""), st.just("x" * 300),
    st.just([]), st.just({}), st.just([[]]), st.just([1, 2, 3]), st.just({"a": 1}), st.just([None] * 30),
    st.just(list(range(100))), st.just("prod/db"), st.integers(-5, 30), st.floats(allow_nan=False),
)


@functools.lru_cache(maxsize=1)
def snapshot_lines() -> tuple[bytes, ...]:
    """A snapshot with every table in use: settled baselines, an open incident with first-sight
    facts (a secret sweep from a new network), a chain of credentials, peers."""
    engine = Engine(EngineConfig())
    roles = [ident(f"arn:aws:iam::111122223333:role/deploy-{k}", group="aws:1:deploy") for k in range(4)]
    for k, role in enumerate(roles):
        t = history(engine, role, days=8, aws_access_key_id=f"ASIAEXAMPLE{k:04d}",
                    aws_session=f"arn:aws:sts::111122223333:assumed-role/deploy-{k}/i-0abc{k}")
    sweep(engine, roles[0], t + 3 * H)
    engine.observe(obs(roles[1], t + 4 * H, action="iam.amazonaws.com/CreateAccessKey", target="backdoor",
                       src="198.51.100.9", trace=77, nhi_credential_id="AKIAEXAMPLENEW"))
    engine.observe(obs(roles[2], t + 5 * H, src="198.51.100.9", ua="curl/8.4.0", trace=78,
                       aws_access_key_id="ASIAEXAMPLE0001"))
    assert engine.take_events(), "the snapshot must hold an incident"
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.json.gz")
        assert engine.snapshot_to(path)
        with gzip.open(path, "rb") as fh:
            return tuple(fh.read().splitlines())


def _paths(value, prefix=()):
    """Every position in a JSON value, containers included."""
    yield prefix
    if isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, list):
        return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]
    return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}


def _load(tmp_path, lines: list[bytes]) -> Engine:
    path = tmp_path / "engine-state.json.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    engine = Engine(EngineConfig())
    engine.restore_from(str(path))
    return engine


def _every_identity_still_processes(engine: Engine) -> None:
    ids = [p.identity for _, p in engine._roster.items()]
    t = T0 + 20 * D
    for k, identity in enumerate(ids + [ident("arn:aws:iam::111122223333:role/brand-new")]):
        for j, (src, action) in enumerate((("10.20.0.5", "secretsmanager.amazonaws.com/GetSecretValue"),
                                           ("198.51.100.9", "iam.amazonaws.com/CreateAccessKey"),
                                           ("10.20.0.6", "sts.amazonaws.com/AssumeRole"))):
            engine.observe(obs(identity, t + (k * 3 + j) * S, action=action, src=src, trace=1000 + k * 3 + j,
                               aws_access_key_id="ASIAEXAMPLE0001", nhi_credential_id="AKIAEXAMPLENEW",
                               aws_session="arn:aws:sts::111122223333:assumed-role/deploy-0/i-0abc0"))
    engine.take_events()
    engine.describe(ids[0].id if ids else "x")


def test_the_unmutated_snapshot_loads_and_processes(tmp_path):
    _every_identity_still_processes(_load(tmp_path, list(snapshot_lines())))


@settings(max_examples=int(os.environ.get("NHI_HOSTILE_EXAMPLES", "300")), deadline=None,
          derandomize=not os.environ.get("NHI_HOSTILE_EXAMPLES"),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_hostile_value_anywhere_is_a_state_error_or_harmless(tmp_path, data):
    lines = list(snapshot_lines())
    number = data.draw(st.integers(1, len(lines) - 1), label="line")  # the header is checked by version
    value = orjson.loads(lines[number])
    paths = list(_paths(value))
    path = data.draw(st.sampled_from(paths[1:] or paths), label="path")
    new = data.draw(HOSTILE, label="value")
    lines[number] = json.dumps(_replace(value, path, new)).encode()  # orjson refuses integers past 64 bits
    try:
        engine = _load(tmp_path, lines)
    except StateError as exc:
        assert "--reset-state" in str(exc) and "\n" not in str(exc)
        return
    _every_identity_still_processes(engine)
