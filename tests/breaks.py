#!/usr/bin/env python3
"""Deliberate breaks, one at a time: each must make at least one test fail.

A hand-written mutation run over the changes a reviewer found the suite blind to (issue 9), and
more like them. For every break the working tree (``otel_processor/``, ``simulator/``,
``scenarios/``, ``tests/``) is copied to a temporary folder, the break is applied there as a text
replacement that must match exactly once, and the tests named as its killers run against the
copy in pure-Python mode (so nothing needs compiling). A break whose killers all pass is a
surviving mutant: the script exits 1.

    python tests/breaks.py                 # every break, its named killers (a few minutes)
    python tests/breaks.py --suite         # every break, the whole suite: which tests kill each
    python tests/breaks.py --only chain    # breaks whose name contains "chain"
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIED = ("otel_processor", "simulator", "scenarios", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Break:
    name: str
    file: str
    find: str
    replace: str
    killers: tuple[str, ...]
    nth: int = 0  # which occurrence when ``find`` occurs more than once (then ``count`` says how many)
    count: int = 1


BREAKS = (
    Break("peer-group discount never applied", "otel_processor/engine/engine.py",
          "                if shared:\n                    score *= c.peer_discount\n", "",
          ("tests/engine/test_engine.py::test_the_same_change_made_by_the_whole_group_is_discounted",
           "tests/simulator/test_simulator.py::test_bench_on_a_small_fleet_detects_every_attack_and_no_benign_identity")),
    Break("chain window ignored between mailbox rule and consent", "otel_processor/engine/links.py",
          "after_tamper = tamper is not None and 0 <= t - tamper[0] <= self.window_ns",
          "after_tamper = tamper is not None",
          ("tests/engine/test_engine.py::test_consent_long_after_the_mailbox_rule_is_not_a_chain",)),
    Break("chain window ignored between consent and the app's use", "otel_processor/engine/links.py",
          "if link is not None and 0 <= t - link[0] <= self.window_ns:", "if link is not None:",
          ("tests/engine/test_engine.py::test_app_acting_long_after_the_consent_is_not_a_chain",)),
    Break("organisation-internal mailbox rules counted as tampering", "otel_processor/engine/links.py",
          'external = o.details.get("email.external") == "true" or o.action == "mailbox.forwarding_rule.created"',
          "external = True",
          ("tests/engine/test_engine.py::test_an_inbox_rule_forwarding_inside_the_organisation_is_not_tampering",)),
    Break("new-value warm-up ignores the history's age", "otel_processor/engine/engine.py",
          "warmed = age >= self._warmup_ns and p.count >= c.warmup_records",
          "warmed = p.count >= c.warmup_records",
          ("tests/engine/test_engine.py::test_warmup_needs_history_as_well_as_records",)),
    Break("HTTP forwarder accepts any status code", "otel_processor/hosts/serve/forwarder.py",
          "if 200 <= response.status < 300:", "if True:",
          ("tests/hosts/test_service.py::test_http_forwarding_passes_on_only_what_downstream_accepted",)),
    Break("credentials on log-batch resources left unmasked", "otel_processor/pipeline/batch.py",
          "                if res_special:\n                    mask_credentials(res_attrs)\n", "",
          ("tests/pipeline/test_pipeline.py::test_credentials_on_the_resource_are_masked_too",), nth=1, count=2),
    Break("credentials on trace-batch resources left unmasked", "otel_processor/pipeline/batch.py",
          "                if res_special:\n                    mask_credentials(res_attrs)\n", "",
          ("tests/pipeline/test_pipeline.py::test_credentials_on_the_resource_are_masked_too",), nth=0, count=2),
    Break("security_rule.name a constant in the engine", "otel_processor/engine/engine.py",
          "rule_name=rule.name", 'rule_name="Non-human identity behaviour departed from its baseline"',
          ("tests/engine/test_engine.py::test_each_incident_names_the_rule_its_evidence_matches",)),
    Break("security_rule.name a constant in the event encoding", "otel_processor/outputs/events.py",
          '_put(a, "security_rule.name", event.rule_name)', '_put(a, "security_rule.name", "rule")',
          ("tests/hosts/test_service.py::test_event_encoding_carries_the_incident_and_its_rule",)),
    Break("trust never lowered on records without findings", "otel_processor/engine/engine.py",
          "            if not p.drop:\n                return _NEUTRAL\n", "            return _NEUTRAL\n",
          ("tests/engine/test_engine.py::test_trust_stays_lowered_on_later_records_without_findings_and_recovers",)),
    Break("an engine that never emits an event", "otel_processor/engine/engine.py",
          "        self._events.append(self._event(p, case, t, trace_id, span_id, effective, incident))\n",
          "        self._event(p, case, t, trace_id, span_id, effective, incident)\n",
          ("tests/simulator/test_simulator.py::test_bench_on_a_small_fleet_detects_every_attack_and_no_benign_identity",
           "tests/hosts/test_sharding.py::test_two_replicas_detect_what_one_instance_detects")),
    Break("forged nhi.* attributes kept", "otel_processor/outputs/redact.py",
          "        elif key in OUR_ATTRIBUTES:\n            doomed.append(i)\n", "",
          ("tests/pipeline/test_pipeline.py::test_unattributable_records_pass_unchanged_and_forged_nhi_values_are_dropped",)),
    Break("score_one learns", "otel_processor/engine/detectors.py",
          "        if not warmed:\n            return []\n        novel = self.novel_count",
          "        self.learn_one(f, warmed, caps)\n        if not warmed:\n            return []\n"
          "        novel = self.novel_count",
          ("tests/engine/test_detectors.py::test_update_is_score_one_then_learn_one_and_score_one_changes_nothing",)),
)


def apply(tree: str, b: Break) -> None:
    path = os.path.join(tree, b.file)
    text = open(path, encoding="utf-8").read()
    found = text.count(b.find)
    if found != b.count:
        raise SystemExit(f"break {b.name!r}: expected {b.count} occurrence(s) in {b.file}, found {found}; "
                         "update tests/breaks.py to the code")
    at = -1
    for _ in range(b.nth + 1):
        at = text.index(b.find, at + 1)
    open(path, "w", encoding="utf-8").write(text[:at] + b.replace + text[at + len(b.find):])


def run_tests(tree: str, targets: list[str]) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONPATH": tree, "NHI_PURE_PYTHON": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf",
                           "-m", "not rotel", *targets], cwd=tree, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
    return proc.returncode, failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", action="store_true", help="run the whole suite per break, not its named killers")
    p.add_argument("--only", help="breaks whose name contains this")
    args = p.parse_args(argv)
    chosen = [b for b in BREAKS if not args.only or args.only in b.name]
    survivors = []
    for b in chosen:
        with tempfile.TemporaryDirectory(prefix="nhi-break-") as tree:
            for name in COPIED:
                src = os.path.join(ROOT, name)
                if os.path.isdir(src):
                    shutil.copytree(src, os.path.join(tree, name),
                                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__", ".hypothesis"))
                else:
                    shutil.copy(src, tree)
            apply(tree, b)
            code, failed = run_tests(tree, ["tests"] if args.suite else list(b.killers))
        killed = code == 1 and failed
        print(f"{'killed ' if killed else 'SURVIVED'}  {b.name}", flush=True)
        for test in failed:
            print(f"            by {test}", flush=True)
        if not killed:
            survivors.append(b.name)
    print(f"\n{len(chosen) - len(survivors)} of {len(chosen)} breaks caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
