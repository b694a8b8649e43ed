"""Reading a record's attributes: only the keys that matter, decoded once, as Python values.

What ``read_attributes`` does with a key is one dict look-up: 1 decode it, 2 decode it and note
that the record carries a credential (to be masked), 3 note a forged ``nhi.*`` attribute (to be
dropped before enrichment). Every other key is never decoded.

The compiled build reads the same off the request's wire bytes (``_wire.pyx``), several times
faster than iterating through the protobuf runtime; ``read_attributes`` is the reference and the
fallback, and ``tests/test_wire.py`` checks that the two agree.
"""

from __future__ import annotations

import logging

from .._compiled import optional_extension
from ..anyvalue import to_python
from ..identity.credentials import CREDENTIAL_ATTRIBUTES
from ..identity.rules import IDENTITY_KEYS
from ..observe.record import RESOLUTION_CONTEXT_KEYS, WANTED
from ..outputs.enrich import OUR_ATTRIBUTES

log = logging.getLogger(__name__)

DECODE, CREDENTIAL, OURS = 1, 2, 3


def key_actions(wanted) -> dict[str, int]:
    table = {key: DECODE for key in wanted}
    table.update({key: CREDENTIAL for key in CREDENTIAL_ATTRIBUTES})
    table.update({key: OURS for key in OUR_ATTRIBUTES})
    return table


# With detection on, everything the observation needs; with it off, only what resolution reads.
KEYS_FOR_DETECTION = key_actions(WANTED)
KEYS_FOR_RESOLUTION = key_actions(IDENTITY_KEYS | RESOLUTION_CONTEXT_KEYS)

wire = optional_extension("otel_processor.pipeline._wire")


def read_attributes(attributes, table: dict[str, int] = KEYS_FOR_DETECTION) -> tuple[dict, bool]:
    """The wanted attributes as Python values; and whether any credential or nhi.* key is present.

    A later duplicate key wins, as it does for the protobuf-to-dict readers downstream.
    """
    out = {}
    special = False
    action_of = table.get
    for kv in attributes:
        key = kv.key
        action = action_of(key)
        if action is None:
            continue
        if action == OURS:
            special = True
            continue
        value = kv.value
        text = value.string_value
        out[key] = text if text else to_python(value)
        if action == CREDENTIAL:
            special = True
    return out, special


class RequestReader:
    """Every record's ``read_attributes`` result for a whole request, from the compiled reader;
    None where the compiled build is absent or cannot read the request."""

    def __init__(self, table: dict[str, int]):
        self.table = table
        self._wire_table = wire.KeyTable(table) if wire is not None else None

    def read(self, request, field_number: int, records: int):
        if self._wire_table is None:
            return None
        reads = wire.read_request(request.SerializeToString(), field_number, self._wire_table)
        if len(reads) != records:  # never pair a record with another's attributes
            log.error("wire reader found %d records, the request has %d; reading them one by one",
                      len(reads), records)
            return None
        return iter(reads)
