"""The refusals ``Service.handle`` raises and every receiver turns into a status code."""

from __future__ import annotations


class Unavailable(Exception):
    """Retryable refusal: the host answers UNAVAILABLE / 503 with a retry delay."""


class Rejected(Exception):
    """Permanent refusal (the request itself is wrong): INVALID_ARGUMENT / 400."""
