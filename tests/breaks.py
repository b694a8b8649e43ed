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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from look_alikes import look_alike_pairs  # noqa: E402

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
    every: bool = False  # caught only when every killer fails, not one of them


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
          "            if 200 <= status < 300:\n                return partial_of_http(",
          "            if True:\n                return partial_of_http(",
          ("tests/hosts/test_service.py::test_http_forwarding_passes_on_only_what_downstream_accepted",)),
    Break("credentials on resources left unmasked", "otel_processor/outputs/redact.py",
          "                if not fd.is_repeated:\n                    self.message(value, skip_records, strings)\n",
          "                if not fd.is_repeated:\n                    if fd.name != \"resource\":\n"
          "                        self.message(value, skip_records, strings)\n",
          ("tests/pipeline/test_pipeline.py::test_credentials_on_the_resource_are_masked_too",)),
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
    # Every positive twin of a look-alike test (tests/look_alikes.py) that runs the engine: each
    # must fail on it, or its look-alike proves nothing.
    Break("an engine that never emits an event, against every look-alike's twin", "otel_processor/engine/engine.py",
          "        self._events.append(self._event(p, case, t, trace_id, span_id, effective, incident))\n",
          "        self._event(p, case, t, trace_id, span_id, effective, incident)\n",
          tuple(sorted({f"{path}::{twin}" for path, _, twin in look_alike_pairs()
                        if twin and not path.endswith("test_detectors.py")})), every=True),
    Break("forged nhi.* attributes kept", "otel_processor/outputs/redact.py",
          "            if strip and key in OUR_ATTRIBUTES:\n                doomed.append(i)\n                continue\n", "",
          ("tests/pipeline/test_pipeline.py::test_unattributable_records_pass_unchanged_and_forged_nhi_values_are_dropped",)),
    Break("score_one learns", "otel_processor/engine/detectors.py",
          "        if not warmed:\n            return []\n        novel = self.novel_count",
          "        self.learn_one(f, warmed, caps)\n        if not warmed:\n            return []\n"
          "        novel = self.novel_count",
          ("tests/engine/test_detectors.py::test_update_is_score_one_then_learn_one_and_score_one_changes_nothing",)),
    # Issue 22: breaks an independent review found the suite blind to.
    Break("a bearer token accepted by prefix", "otel_processor/hosts/serve/auth.py",
          "found |= hmac.compare_digest(given, accepted)", "found |= hmac.compare_digest(given, accepted[:len(given)])",
          ("tests/hosts/test_adversarial.py::test_a_bearer_token_is_accepted_whole_and_only_whole",)),
    Break("bytes values not masked", "otel_processor/outputs/redact.py",
          "        elif kind == \"bytes_value\":\n            text = value.bytes_value.decode(\"utf-8\", \"replace\")",
          "        elif kind == \"bytes_value\" and False:\n            text = value.bytes_value.decode(\"utf-8\", \"replace\")",
          ("tests/outputs/test_redact.py::test_no_planted_secret_leaves_a_span",
           "tests/outputs/test_redact.py::test_no_secret_leaves_a_log_body_resource_or_scope")),
    Break("a snapshot drops the credential facts", "otel_processor/engine/state.py",
          "_dump({\"credential_facts\": engine._credential_book.state()}),", "",
          ("tests/engine/test_first_sight.py::test_a_snapshot_keeps_every_cross_identity_table",)),
    Break("a snapshot drops the grant table", "otel_processor/engine/state.py",
          "_dump({\"grants\": engine._grants.state()}),", "",
          ("tests/engine/test_first_sight.py::test_a_snapshot_keeps_every_cross_identity_table",)),
    Break("a snapshot drops the credential table", "otel_processor/engine/state.py",
          "_dump({\"credentials\": engine._credentials.state()}),", "",
          ("tests/engine/test_first_sight.py::test_a_snapshot_keeps_every_cross_identity_table",)),
    Break("a network exception vouches for an address that is no IP", "otel_processor/outputs/exceptions.py",
          "            except ValueError:\n                return False\n", "            except ValueError:\n                continue\n",
          ("tests/outputs/test_exceptions.py::test_each_match_field_holds_for_its_event_and_not_for_one_that_adds_anything",)),
    Break("OCSF Create and Update swapped", "otel_processor/outputs/ocsf.py",
          "(1, \"Create\") if event.version <= 1 else (2, \"Update\")", "(2, \"Update\") if event.version <= 1 else (1, \"Create\")",
          ("tests/outputs/test_event_formats.py::test_ocsf_activity_is_create_for_an_incidents_first_event_and_update_after",)),
    Break("OCSF severity off by one band", "otel_processor/outputs/ocsf.py",
          "_SEVERITY = {\"low\": (2, \"Low\"), \"medium\": (3, \"Medium\"), \"high\": (4, \"High\"), \"critical\": (5, \"Critical\")}",
          "_SEVERITY = {\"low\": (1, \"Informational\"), \"medium\": (2, \"Low\"), \"high\": (3, \"Medium\"), \"critical\": (4, \"High\")}",
          ("tests/outputs/test_event_formats.py::test_ocsf_severity_follows_the_score_band",)),
    Break("SIEM fields take the oldest value", "otel_processor/outputs/event_facts.py",
          "return values[-1] if values else None", "return values[0] if values else None",
          ("tests/outputs/test_event_formats.py::test_the_single_value_fields_are_the_latest_facts_in_both_formats",)),
    Break("ready while draining", "otel_processor/hosts/serve/service.py",
          "        if self._stopping.is_set():\n            return False, \"shutting down\"\n", "",
          ("tests/hosts/test_operations.py::test_readiness_says_no_as_soon_as_shutdown_starts_while_a_batch_drains",)),
    Break("an issued key's recipient and issuer swapped", "otel_processor/inputs/cloudtrail.py",
          "issued = Issuance(key, session, service)", "issued = Issuance(key, service, session)",
          ("tests/inputs/test_vendor_inputs.py::test_issuance_by_a_service_becomes_a_credential_fact",)),
    Break("a GitHub token's owner dropped", "otel_processor/inputs/github.py",
          "else \"github.token_id\", owner=actor,", "else \"github.token_id\",",
          ("tests/inputs/test_vendor_inputs.py::test_fixture_converts_and_attributes_to_the_contract_identity",)),
    Break("an incident named from the first finding to arrive", "otel_processor/engine/correlator.py",
          "if not self.first_ns or (finding.time_ns < self.first_ns and self.incident is None):",
          "if not self.first_ns:",
          ("tests/engine/test_engine.py::test_the_earliest_finding_names_the_incident_in_any_arrival_order",)),
)


class Stale(Exception):
    """A break whose text no longer stands in the code as many times as it says."""


def broken(text: str, b: Break) -> str:
    """``text`` (the content of ``b.file``) with the break applied."""
    found = text.count(b.find)
    if found != b.count:
        raise Stale(f"expected {b.count} occurrence(s) in {b.file}, found {found}; update tests/breaks.py to the code")
    at = -1
    for _ in range(b.nth + 1):
        at = text.index(b.find, at + 1)
    return text[:at] + b.replace + text[at + len(b.find):]


def apply(tree: str, b: Break) -> None:
    path = os.path.join(tree, b.file)
    text = open(path, encoding="utf-8").read()
    open(path, "w", encoding="utf-8").write(broken(text, b))


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
    survivors, stale = [], []
    for b in chosen:
        with tempfile.TemporaryDirectory(prefix="nhi-break-") as tree:
            for name in COPIED:
                src = os.path.join(ROOT, name)
                if os.path.isdir(src):
                    shutil.copytree(src, os.path.join(tree, name),
                                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__", ".hypothesis"))
                else:
                    shutil.copy(src, tree)
            try:
                apply(tree, b)
            except Stale as exc:
                print(f"STALE     {b.name}: {exc}", flush=True)
                stale.append(b.name)
                continue
            code, failed = run_tests(tree, ["tests"] if args.suite else list(b.killers))
        missed = [k for k in b.killers if not any(f == k or f.startswith(k + "[") for f in failed)] if b.every else []
        killed = code == 1 and failed and not missed
        print(f"{'killed ' if killed else 'SURVIVED'}  {b.name}", flush=True)
        for test in failed:
            print(f"            by {test}", flush=True)
        for test in missed:
            print(f"            not by {test}", flush=True)
        if not killed:
            survivors.append(b.name)
    caught = len(chosen) - len(survivors) - len(stale)
    print(f"\n{caught} of {len(chosen)} breaks caught" + (f", {len(stale)} stale" if stale else ""))
    return 1 if survivors or stale else 0


if __name__ == "__main__":
    sys.exit(main())
