"""Look-alike tests and their twins.

A test that ends by asserting that no event or finding came out passes on an engine that never
emits anything, so it names, with ``@pytest.mark.look_alike_of("twin")``, the test in its file
that shows the engine does raise on the case it resembles. ``tests/config/test_suite.py`` checks
every such test has a twin; ``tests/breaks.py`` checks every twin fails on a silent engine.
"""

from __future__ import annotations

import ast
import os
import re

from paths import ROOT, TESTS

NOTHING_HAPPENED = re.compile(
    r"take_events\(\) == \[\]|\bevents == \[\]|\)\[1\] == \[\]|\) == \[\]$|not in _facets\(|"
    r"assert not any\(.*\bfor e in (events|engine\.take_events\(\))|\"nhi\.anomaly\" in attrs_of|found\[.*\] is False")
DETECTION_TESTS = ("engine", "inputs")


def nothing_happened_tests(source: str) -> dict[str, str | None]:
    """Test name -> the twin its ``look_alike_of`` marker names (None when it has none), for every
    test whose last assertion says nothing happened."""
    tree = ast.parse(source)
    found = {}
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
            continue
        asserts = [n for n in ast.walk(node) if isinstance(n, ast.Assert)]
        if not asserts or not NOTHING_HAPPENED.search(ast.get_source_segment(source, max(asserts, key=lambda a: a.lineno))):
            continue
        twin = None
        for deco in node.decorator_list:
            if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "look_alike_of":
                twin = deco.args[0].value
        found[node.name] = twin
    return found


def look_alike_pairs() -> list[tuple[str, str, str | None]]:
    """(file, negative test, its twin) for every detection test that ends by asserting nothing happened."""
    pairs = []
    for room in DETECTION_TESTS:
        for name in sorted(os.listdir(os.path.join(TESTS, room))):
            if name.startswith("test_") and name.endswith(".py"):
                path = os.path.join(TESTS, room, name)
                for test, twin in nothing_happened_tests(open(path, encoding="utf-8").read()).items():
                    pairs.append((os.path.relpath(path, ROOT), test, twin))
    return pairs
