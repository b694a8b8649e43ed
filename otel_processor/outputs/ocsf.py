"""A convergence event as an OCSF Detection Finding (class 2004, OCSF 1.5.0, profiles host and
security_control): what a SIEM or data lake that speaks OCSF (Security Lake, Splunk, Sentinel's
ASIM mappings) ingests without a parser of ours.

Mapping, by OCSF attribute:
- ``finding_info``: ``uid`` the convergence id (one per incident), ``title`` the rule name,
  ``desc`` the rule's description, ``analytic`` Behavioral, ``attacks`` the rule's ATT&CK
  techniques, first and last seen the evidence's event times, ``related_events`` the evidence's
  trace ids and source record ids, ``data_sources`` the signals;
- ``activity_id`` Create for version 1, Update after; ``metadata.uid`` ``<id>.<version>``;
- ``anomaly_analyses``: one anomaly per finding (facet, reason), the identity's baseline counts as
  baselines, the identity as the analysis target;
- ``evidences``: the source addresses, user agents, actions and targets of the evidence;
- ``actor.user``: the identity (``type_id`` 99 Other, ``type`` the NHI kind) and its credential;
- ``severity_id`` from the score band, ``risk_score`` and ``confidence_score`` the score x 100.

tests/test_events.py validates the output against a JSON Schema generated from the public OCSF
schema (tests/testdata/ocsf/).
"""

from __future__ import annotations

import json

from ..model import ConvergenceEvent
from ..version import __version__
from .event_facts import attack_ids, latest, overflowed, severity_band
from .redact import mask_secrets

OCSF_VERSION = "1.5.0"
CLASS_UID = 2004
CATEGORY_UID = 2
_SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High"), "critical": (5, "Critical")}
_RISK_LEVEL = {"low": (1, "Low"), "medium": (2, "Medium"), "high": (3, "High"), "critical": (4, "Critical")}


def _ms(ns: int) -> int:
    return ns // 1_000_000


def detection_finding(event: ConvergenceEvent) -> dict:
    band = severity_band(event.score)
    severity_id, severity = _SEVERITY[band]
    risk_id, risk = _RISK_LEVEL[band]
    activity_id, activity = (1, "Create") if event.version <= 1 else (2, "Update")
    score = int(round(event.score * 100))
    ident = event.identity
    facts = event.facts
    credential = latest(event, "credential")
    user = {"uid": ident.id, "name": ident.principal, "type_id": 99, "type": ident.kind}
    if credential:
        user["credential_uid"] = mask_secrets(credential)
    related = [{"uid": t, "type": "trace"} for t in event.evidence_trace_ids]
    related += [{"uid": mask_secrets(r), "type": "record"} for r in facts.get("record_id", ())]
    info = {
        "uid": event.convergence_id,
        "title": event.rule_name,
        "desc": event.rule_description,
        "types": [event.rule_category],
        "analytic": {"type_id": 2, "type": "Behavioral", "name": event.rule_name, "category": event.rule_category},
        "attacks": [{"technique": {"uid": t}, "version": "v16"} for t in attack_ids(event.rule_references)],
        "first_seen_time": _ms(event.first_seen_ns),
        "last_seen_time": _ms(event.last_seen_ns),
        "data_sources": list(event.signals),
        "related_events": related,
        "related_events_count": len(related),
    }
    anomalies = []
    for finding in event.findings:
        facet, _, reason = finding.partition(": ")
        anomalies.append({"observation_parameter": facet, "observation_type": facet.split(".")[0],
                          "observations": [{"value": mask_secrets(reason)}]})
    baselines = [{"observation_parameter": name, "observation_type": "distinct values known" if name != "records"
                  else "records seen", "observations": [{"value": str(count), "count": count}]}
                 for name, count in sorted(event.baseline.items())]
    evidence = {"actor": {"user": user}}
    addresses = facts.get("source.address", ())
    if addresses:
        evidence["src_endpoint"] = {"ip": addresses[-1]}
    actions = facts.get("action", ())
    if actions:
        evidence["api"] = {"operation": mask_secrets(actions[-1])}
    targets = facts.get("target", ())
    if targets:
        evidence["resources"] = [{"name": mask_secrets(t)} for t in targets]
    # One evidence per further action and address: every value the event holds is in the finding,
    # so that an exception drafted from it (``exceptions draft``) matches the event it came from.
    evidences = ([evidence] + [{"api": {"operation": mask_secrets(a)}} for a in actions[:-1]]
                 + [{"src_endpoint": {"ip": a}} for a in addresses[:-1]])
    out = {
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Detection Finding: {activity}",
        "time": _ms(event.time_ns),
        "severity_id": severity_id,
        "severity": severity,
        "risk_score": score,
        "risk_level_id": risk_id,
        "risk_level": risk,
        "confidence_score": score,
        "is_alert": True,
        "status_id": 1,
        "status": "New",
        "message": mask_secrets(event.body),
        "finding_info": info,
        "anomaly_analyses": [{
            "analysis_targets": [{"name": ident.id, "type": ident.kind}],
            "anomalies": anomalies,
            "baselines": baselines,
        }],
        "evidences": evidences,
        "actor": {"user": user},
        "metadata": {
            "version": OCSF_VERSION,
            "uid": f"{event.convergence_id}.{event.version}",
            "correlation_uid": event.convergence_id,
            "profiles": ["host", "security_control"],
            "product": {"name": "nhi-convergence", "vendor_name": "nhi-convergence", "version": __version__},
        },
    }
    if event.response:
        out["remediation"] = {"desc": event.response}
    overflow = overflowed(event)
    if overflow:  # the evidences hold the first values only (OCSF's place for what it has no field for)
        out["unmapped"] = {"nhi.convergence.overflow": overflow}
    if event.identity.owner:
        out["finding_info"]["tags"] = [{"name": "owner", "value": event.identity.owner}]
    return out


def detection_finding_json(event: ConvergenceEvent) -> str:
    return json.dumps(detection_finding(event), separators=(",", ":"), ensure_ascii=False)
