"""Credential masking on records before they leave: secrets become fingerprints, forged ``nhi.*``
attributes are dropped."""

from __future__ import annotations

from ..anyvalue import to_python
from ..identity.credentials import CREDENTIAL_ATTRIBUTES, MASK_PREFIX, masked
from .enrich import OUR_ATTRIBUTES

_CREDENTIAL_KEYS = frozenset(CREDENTIAL_ATTRIBUTES)


def mask_credentials(attributes) -> None:
    """Replace credential values in place by their fingerprints; strip forged ``nhi.*`` values."""
    doomed = []
    for i, kv in enumerate(attributes):
        key = kv.key
        if key in _CREDENTIAL_KEYS:
            value = kv.value
            if value.WhichOneof("value") == "array_value":
                for item in value.array_value.values:
                    if item.string_value and not item.string_value.startswith(MASK_PREFIX):
                        item.string_value = masked(item.string_value)
            elif value.WhichOneof("value") is not None:
                raw = value.string_value or str(to_python(value))  # a non-string secret is still one
                if not raw.startswith(MASK_PREFIX):
                    value.Clear()
                    value.string_value = masked(raw) if raw else ""
        elif key in OUR_ATTRIBUTES:
            doomed.append(i)
    for i in reversed(doomed):
        del attributes[i]
