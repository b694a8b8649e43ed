"""The suite itself: CI runs what the README says, and no test asserts how long something took.

A wall-clock bound fails on a busy machine and passes on a fast one whatever the code does; a
test that must show bounded work counts the work (bytes scanned, records examined) and the time
goes to ``benchmarks/``.
"""

from __future__ import annotations

import ast
import os
import re

from look_alikes import look_alike_pairs, nothing_happened_tests
from paths import ROOT, TESTS

CLOCKS = {"perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns", "process_time",
          "process_time_ns", "thread_time"}


def _is_clock_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCKS
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "time")


def wall_clock_assertions(source: str, filename: str) -> list[int]:
    """Lines of ``assert`` statements that read a clock, directly or through a name assigned from
    one (``started = time.monotonic()``, then an assertion on the time since ``started``)."""
    tree = ast.parse(source, filename)
    timed = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and node.value is not None and any(
                _is_clock_call(n) for n in ast.walk(node.value)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            timed |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and any(
                _is_clock_call(n) or (isinstance(n, ast.Name) and n.id in timed) for n in ast.walk(node.test)):
            found.append(node.lineno)
    return found


def test_no_test_asserts_a_wall_clock_bound():
    offenders = []
    for folder, _dirs, files in os.walk(TESTS):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                lines = wall_clock_assertions(open(path, encoding="utf-8").read(), path)
                offenders += [f"{os.path.relpath(path, ROOT)}:{n}" for n in lines]
    assert offenders == []


def test_the_wall_clock_check_finds_both_forms():
    # written with the clock's name apart, so that a grep for such assertions does not find these
    counter = "perf_counter"
    direct = "import time\nassert time.{c}() < 5\n".format(c=counter)
    through_a_name = "import time\nstarted = time.{c}()\nx = 1\nassert time.{c}() - started < 3\n".format(c="monotonic")
    took = "import time\nt0 = time.time()\ntook = time.time() - t0\nassert took < 8.0\n"
    guard = "import time\ndeadline = time.{c}() + 5\nwhile time.{c}() < deadline:\n    pass\nassert True\n".format(
        c="monotonic")
    assert wall_clock_assertions(direct, "d") == [2]
    assert wall_clock_assertions(through_a_name, "n") == [4]
    assert wall_clock_assertions(took, "t") == [4]
    assert wall_clock_assertions(guard, "g") == []


def test_ci_runs_the_readme_test_command():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    commands = re.search(r"```sh\n(.*?)\n```", readme, re.S).group(1).splitlines()
    assert len(commands) == 2, "the README starts with two commands: the main job, then the tests"
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().rstrip().splitlines()
    assert ci[-1] == commands[1]
    assert "-m both_builds" in commands[1] and "NHI_PURE_PYTHON=1" in commands[1]


def test_every_deliberate_break_still_applies_to_the_code():
    """``tests/breaks.py`` applies each break as a text replacement: one that no longer matches
    the code checks nothing, so it fails here rather than when someone next runs the script.
    Every killer it names must exist too."""
    import breaks

    for b in breaks.BREAKS:
        text = open(os.path.join(ROOT, b.file), encoding="utf-8").read()
        assert breaks.broken(text, b) != text, b.name
        for killer in b.killers:
            path, _, name = killer.partition("::")
            source = open(os.path.join(ROOT, path), encoding="utf-8").read()
            assert re.search(rf"^def {re.escape(name.split('[')[0])}\(", source, re.M), f"{b.name}: no {killer}"


def test_every_nothing_happened_detection_test_names_a_positive_twin_in_its_file():
    pairs = look_alike_pairs()
    assert len(pairs) >= 20, "the check must see the look-alike tests"
    unpaired = [f"{path}::{test}" for path, test, twin in pairs if twin is None]
    assert unpaired == []
    for path, test, twin in pairs:
        source = open(os.path.join(ROOT, path), encoding="utf-8").read()
        assert re.search(rf"^def {twin}\(", source, re.M), f"{path}::{test}: no twin {twin}"
        assert twin not in nothing_happened_tests(source), f"{path}::{test}: its twin {twin} also expects nothing"
