"""Failing clearly: every problem a user can fix is one line naming it and exit code 2, and state
on disk survives crashes, floods and corruption without taking the service down."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from otel_processor.config import ProcessorConfig, TelemetryConfig
from otel_processor.engine import Engine, EngineConfig
from otel_processor.engine.state import StateError
from otel_processor.errors import ConfigError

from observations import D, H, S, T0, history, ident, obs, sweep
from paths import PACKAGE


def run_cli(*args, env=None, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "otel_processor", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(stderr: str) -> str:
    """The one line an error is; the start-up's log warnings (stale provider ranges) are not errors."""
    lines = [line for line in stderr.splitlines() if line.strip() and " WARNING " not in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _snapshot(tmp_path, identities=3) -> str:
    engine = Engine()
    for i in range(identities):
        engine.observe(obs(ident(f"svc-{i}", kind="service_account"), T0 + i * S))
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    path = str(state / "engine-state.json.gz")
    assert engine.snapshot_to(path)
    return path


CORRUPTIONS = {
    "empty": lambda data: b"",
    "garbage": lambda data: b"this is not a snapshot at all",
    "truncated": lambda data: gzip.compress(gzip.decompress(data)[:-40]),
    "cut gzip": lambda data: data[: len(data) // 2],
    "wrong version": lambda data: gzip.compress(b'{"version": 99}\n'),
    "one bad profile": lambda data: gzip.compress(gzip.decompress(data).replace(b'"svc-1"', b'7', 1)
                                                  .replace(b"[[", b"[[[", 1)),
    # well formed, as an editor of the state directory would make them
    "a count that is text": lambda data: _edited(data, "profiles", lambda v: v[0].__setitem__(3, "many")),
    "a table of another shape": lambda data: _edited(data, "chain", lambda v: None, whole={"chain": None}),
    "a table the engine never writes": lambda data: _edited(data, "chain", lambda v: None, whole={"admin": True}),
}


def _edited(data: bytes, table: str, change, whole: dict | None = None) -> bytes:
    """The snapshot with one JSON line changed: ``change`` edits the table's value in place,
    or ``whole`` replaces the line."""
    import json

    lines = gzip.decompress(data).splitlines()
    for k, line in enumerate(lines):
        entry = json.loads(line)
        if table in entry:
            if whole is not None:
                entry = whole
            else:
                change(entry[table])
            lines[k] = json.dumps(entry).encode()
            break
    return gzip.compress(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_corrupt_state_stops_start_up_with_one_line_and_exit_2(tmp_path, how):
    path = _snapshot(tmp_path)
    data = open(path, "rb").read()
    open(path, "wb").write(CORRUPTIONS[how](data))
    with pytest.raises(StateError):
        Engine().restore_from(path)
    code, _, err = run_cli("serve", "--listen-admin", "", "--listen-grpc", f"127.0.0.1:{free_port()}", "--listen-http", "",
                           "--state-dir", os.path.dirname(path))
    line = one_line_error(err)
    assert code == 2 and path in line and "--reset-state" in line


def test_reset_state_moves_the_snapshot_aside_and_starts(tmp_path):
    path = _snapshot(tmp_path)
    open(path, "wb").write(b"garbage")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "otel_processor", "serve", "--listen-admin", "", "--listen-grpc", f"127.0.0.1:{port}",
                             "--listen-http", "", "--state-dir", os.path.dirname(path), "--reset-state"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "moved to" in proc.stdout.readline()
        assert "listening" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    aside = [n for n in os.listdir(os.path.dirname(path)) if ".reset-" in n]
    assert len(aside) == 1 and open(os.path.join(os.path.dirname(path), aside[0]), "rb").read() == b"garbage"


def test_a_state_dir_that_is_a_file_a_busy_port_and_missing_files_are_one_line(tmp_path):
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("x")
    code, _, err = run_cli("serve", "--listen-admin", "", "--listen-grpc", f"127.0.0.1:{free_port()}", "--listen-http", "",
                           "--state-dir", str(not_a_dir))
    assert code == 2 and "is a file" in one_line_error(err)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_cli("serve", "--listen-admin", "", "--listen-grpc", f"127.0.0.1:{port}", "--listen-http", "")
        assert code == 2 and f"127.0.0.1:{port}" in one_line_error(err)
        code, _, err = run_cli("serve", "--listen-admin", "", "--listen-grpc", "", "--listen-http", f"127.0.0.1:{port}")
        assert code == 2 and "cannot listen" in one_line_error(err)

    config = tmp_path / "nhi.yaml"
    config.write_text("engine:\n  rules_file: my-rules.yaml\nservice:\n  auth:\n    bearer_tokens_file: tokens\n")
    code, _, err = run_cli("check-config", str(config))
    assert code == 2 and str(tmp_path / "my-rules.yaml") in one_line_error(err)
    (tmp_path / "my-rules.yaml").write_text(open(os.path.join(PACKAGE,
                                                              "rules", "rules.yaml")).read())
    code, _, err = run_cli("check-config", str(config))
    assert code == 2 and str(tmp_path / "tokens") in one_line_error(err)
    (tmp_path / "tokens").write_text("a-token\n")
    code, out, err = run_cli("check-config", str(config))
    assert code == 0 and out.strip().endswith(": ok"), err


def test_a_metrics_endpoint_whose_exporter_is_not_installed_is_a_clear_error(monkeypatch):
    from otel_processor.hosts.serve.metrics import ProcessorMetrics

    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.metric_exporter", None)
    config = ProcessorConfig(telemetry=TelemetryConfig(metrics_endpoint="http://127.0.0.1:4318"))
    with pytest.raises(ConfigError) as info:
        ProcessorMetrics(config, lambda: 0, dict)
    assert "pip install opentelemetry-exporter-otlp-proto-http" in str(info.value)


def test_version_on_both_commands():
    code, out, _ = run_cli("--version")
    assert code == 0 and out.startswith("nhi-processor ")
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("nhi-sim ")


# -- nhi-sim -------------------------------------------------------------------------------------
def run_sim(*args, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", *args], capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def test_nhi_sim_names_the_cause_in_one_line(tmp_path):
    code, _, err = run_sim("replay", "--from", str(tmp_path / "missing.jsonl"), "--endpoint", "127.0.0.1:1")
    assert code == 2 and "missing.jsonl" in one_line_error(err)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"resourceSpans": [}\n')
    code, _, err = run_sim("replay", "--from", str(bad), "--endpoint", "127.0.0.1:1")
    assert code == 2 and f"{bad}:1" in one_line_error(err)
    good = tmp_path / "good.jsonl"
    good.write_text('{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "1"}]}]}]}\n')
    for endpoint in (f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"):
        code, _, err = run_sim("replay", "--from", str(good), "--endpoint", endpoint, "--no-progress")
        line = one_line_error(err)
        assert code == 2 and "connection refused" in line.lower() and endpoint in line


# -- floods and snapshots ------------------------------------------------------------------------
def test_a_flood_of_new_identities_does_not_flush_a_settled_baseline():
    engine = Engine(EngineConfig(max_identities=2_000))
    me = ident()
    t = history(engine, me)  # a week of history: settled
    catalogued = ident("arn:aws:iam::1:role/declared", cataloged=True)
    engine.observe(obs(catalogued, t))
    for i in range(100_000):  # the flood: every record a new identity
        engine.observe(obs(ident(f"arn:aws:iam::1:role/flood-{i}", group="aws:1:flood"), t + i * 1000, trace=i))
    assert engine.identities_tracked <= 2_000
    assert engine.evictions_by_tier["settled"] == 0 and engine.evictions_by_tier["probation"] >= 98_000
    assert engine._roster.peek(me.id) is not None and engine._roster.peek(catalogued.id) is not None
    engine.take_events()
    sweep(engine, me, t + 3 * H)
    assert any(e.identity.id == me.id for e in engine.take_events()), "the settled identity is still watched"


def test_a_long_idle_settled_identity_may_give_way_to_a_graduate():
    engine = Engine(EngineConfig(max_identities=8, probation_share=0.5, warmup_s=3600, warmup_records=2,
                                 protect_idle_s=7 * 86_400))
    old = [ident(f"arn:aws:iam::1:role/old-{i}") for i in range(4)]
    for o in old:
        for k in range(3):
            engine.observe(obs(o, T0 + k * 2 * H))
    assert len(engine._roster.settled) == 4
    newcomer = ident("arn:aws:iam::1:role/new")
    for k in range(3):  # warms up three days later: the old ones are not yet idle long enough
        engine.observe(obs(newcomer, T0 + 3 * D + k * 2 * H))
    assert engine._roster.peek(newcomer.id).tier == 0
    engine.observe(obs(newcomer, T0 + 9 * D))  # a week later the least recently seen gives way
    assert engine._roster.peek(newcomer.id).tier == 1 and engine.evictions_by_tier["settled"] == 1


class _HandOver:
    """The engine's lock, instrumented: the first time the snapshotting thread lets go of it, an
    observation from another thread must get through before the snapshot goes on."""

    def __init__(self, engine, observation):
        self.engine, self.lock, self.observation = engine, engine._lock, observation
        self.snapshotter: threading.Thread | None = None
        self.through: bool | None = None

    def __enter__(self):
        self.lock.acquire()
        return self

    def __exit__(self, *exc):
        self.lock.release()
        if threading.current_thread() is self.snapshotter and self.through is None and not self.lock._is_owned():
            other = threading.Thread(target=self.engine.observe, args=(self.observation,))
            other.start()
            other.join(60)  # a hang guard, not a time bound: the lock is free, it returns at once
            self.through = not other.is_alive()
        return False


def test_snapshots_do_not_stall_ingestion_and_restore_exactly(tmp_path):
    """The snapshot takes the engine's lock a chunk of identities at a time: an observation made
    after it started, of an identity in its last chunk, is in the file. A snapshot that held the
    lock across its whole write would let the observation in only after writing that identity."""
    engine = Engine(EngineConfig(max_identities=100_000))
    for i in range(40_000):
        engine.observe(obs(ident(f"svc-{i}", kind="service_account", group=f"name:g{i % 100}"), T0 + i * S))
    last_key, last = engine._roster.items()[-1]
    count_before = last.count
    name = last_key.split(":", 1)[1]
    late = obs(ident(name, kind="service_account", group=f"name:g{int(name[4:]) % 100}"), T0 + 50_000 * S)
    assert late.identity.id == last_key
    path = str(tmp_path / "s.json.gz")
    hand_over = _HandOver(engine, late)
    done = []
    hand_over.snapshotter = threading.Thread(target=lambda: done.append(engine.snapshot_to(path)))
    engine._lock = hand_over
    try:
        hand_over.snapshotter.start()
        hand_over.snapshotter.join(300)
    finally:
        engine._lock = hand_over.lock
    assert done == [True] and hand_over.through
    restored = Engine(EngineConfig(max_identities=100_000))
    restored.restore_from(path)
    assert restored.identities_tracked == engine.identities_tracked
    assert restored._roster.peek(last_key).count == count_before + 1, "the observation made mid-snapshot is in it"
    assert not os.path.exists(path + ".tmp")


@pytest.mark.slow
def test_sigterm_with_200k_identities_snapshots_within_the_grace(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    engine = Engine(EngineConfig(max_identities=250_000))
    for i in range(200_000):
        engine.observe(obs(ident(f"svc-{i}", kind="service_account", group=f"name:g{i % 500}"), T0 + i * S,
                           target=f"t{i % 7}", src=f"10.{i % 200}.1.1"))
    path = str(state / "engine-state.json.gz")
    assert engine.snapshot_to(path)
    before = os.path.getmtime(path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "otel_processor", "serve", "--listen-admin", "", "--listen-grpc", f"127.0.0.1:{port}",
                             "--listen-http", "", "--state-dir", str(state)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "listening" in proc.stdout.readline()
        time.sleep(1.1)  # a later mtime than the snapshot written above
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # The service gives its final snapshot the shutdown grace as a deadline and leaves the previous
    # one in place when it runs out (Engine.snapshot_to): a rewritten file is one written in time.
    assert os.path.getmtime(path) > before, "the final snapshot was written within the grace"
    restored = Engine(EngineConfig(max_identities=250_000))
    restored.restore_from(path)
    assert restored.identities_tracked == 200_000


def test_check_config_messages_name_the_problem(tmp_path):
    """Before: `ExceptionEntry.__init__() missing 1 required positional argument: 'owner'`,
    `expected a single value` for an exceptions file, and `ok` for a busy port and for an
    exception that expired in 2020."""
    no_owner = tmp_path / "no-owner.yaml"
    no_owner.write_text("exceptions:\n  - {id: a, match: {identity: 'workload:x'}, reason: r, expires: 2027-01-01}\n")
    code, _, err = run_cli("check-config", str(no_owner))
    assert code == 2 and one_line_error(err).endswith("exceptions[0]: owner is required")
    expired = tmp_path / "expired.yaml"
    expired.write_text("exceptions:\n  - {id: old, match: {identity: 'workload:x'}, owner: o@example.com, "
                       "reason: r, expires: 2020-01-01}\n")
    code, out, err = run_cli("check-config", str(expired))
    assert code == 1 and "'old' expired on 2020-01-01" in err and "1 expired exception" in out
    config = tmp_path / "config.yaml"
    config.write_text(f"exceptions: {expired}\n")
    assert run_cli("check-config", str(config))[0] == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        config.write_text(f"service:\n  listen_grpc: 127.0.0.1:{busy.getsockname()[1]}\n")
        code, _, err = run_cli("check-config", str(config))
    assert code == 2 and "cannot listen on 127.0.0.1:" in one_line_error(err)
