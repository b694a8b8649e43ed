"""What an event says besides its sentence, computed one way for every output format (OTLP
attributes in ``events.py``, OCSF in ``ocsf.py``): the severity band of a score, the latest
value of a fact, the ATT&CK and OWASP ids among a rule's references.
"""

from __future__ import annotations

from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from ..model import FACT_OVERFLOW, ConvergenceEvent

OWASP_NHI_PREFIX = "NHI"

# Score bands, as the big SIEMs band risk (Elastic's risk score: low, medium, high, critical),
# and the OTLP severity each is sent with. Lower bound inclusive.
BANDS = (
    (0.9, "critical", SeverityNumber.SEVERITY_NUMBER_FATAL, "FATAL"),
    (0.7, "high", SeverityNumber.SEVERITY_NUMBER_ERROR, "ERROR"),
    (0.5, "medium", SeverityNumber.SEVERITY_NUMBER_WARN, "WARN"),
    (0.0, "low", SeverityNumber.SEVERITY_NUMBER_INFO, "INFO"),
)


def severity_band(score: float) -> str:
    """``low`` (< 0.5), ``medium`` (< 0.7), ``high`` (< 0.9) or ``critical``."""
    return band_of(score)[1]


def band_of(score: float) -> tuple:
    for band in BANDS:
        if score >= band[0]:
            return band
    return BANDS[-1]


def latest(event: ConvergenceEvent, fact: str) -> str | None:
    values = event.facts.get(fact)
    return values[-1] if values else None


def overflowed(event: ConvergenceEvent) -> list[str]:
    """The facts (action, target, network, source.address...) the event saw more values of than
    it keeps."""
    return sorted(k[:-len(FACT_OVERFLOW)] for k in event.facts if k.endswith(FACT_OVERFLOW))


def attack_ids(references) -> list[str]:
    return [r for r in references if r[:1] == "T" and r[1:2].isdigit()]


def owasp_ids(references) -> list[str]:
    return [r for r in references if r.startswith(OWASP_NHI_PREFIX)]
