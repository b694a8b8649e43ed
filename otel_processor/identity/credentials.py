"""Credentials as identities: a stable, non-reversible fingerprint instead of the secret.

The raw value is never stored, logged or forwarded (TELEMETRY.md section 1, rule 4): the
identity is ``api_key:<fingerprint>`` and the forwarded record carries ``sha256:<fingerprint>``
where the secret was.
"""

from __future__ import annotations

import hashlib

# Attributes whose value is a credential that names the caller (rule 4 of the contract).
CREDENTIAL_ATTRIBUTES = ("http.request.header.authorization", "http.request.header.x-api-key")
MASK_PREFIX = "sha256:"


def fingerprint(secret: str) -> str:
    """16 hex of SHA-256 of the token itself.

    The auth scheme word (``Bearer``, ``Basic``, ``ApiKey``...) is dropped first so that the same
    token sent with or without it is the same identity.
    """
    token = secret.strip()
    scheme, sep, rest = token.partition(" ")
    if sep and rest and scheme.isalpha() and len(scheme) <= 16:
        token = rest.strip()
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def masked(secret: str) -> str:
    """What replaces a credential value in forwarded telemetry."""
    return MASK_PREFIX + fingerprint(secret)


def principal_of_credential(value) -> str | None:
    """The api_key principal of a credential attribute's value (a string or a list of them).

    A value already masked upstream (``sha256:...``) keeps its fingerprint, so a record that
    passes two processors resolves to the same identity.
    """
    if isinstance(value, list):
        value = value[0] if value else None
    if not value:
        return None
    raw = str(value)
    return raw[len(MASK_PREFIX):] if raw.startswith(MASK_PREFIX) else fingerprint(raw)
