"""Per-credential facts: issuance, first use, networks and clients; bounded; kept in snapshots."""

from __future__ import annotations

import json

from otel_processor.engine.credentials import MAX_SEEN, CredentialBook


def test_issuance_then_uses_are_one_credentials_story():
    book = CredentialBook()
    book.issued("ASIA1", 100, "arn:aws:sts::1:assumed-role/r/i-1", "ec2.amazonaws.com", None)
    book.used("ASIA1", 200, "workload:arn:aws:iam::1:role/r", "10.0.1.0/24", "aws-cli")
    book.used("ASIA1", 150, "workload:arn:aws:iam::1:role/r", "198.51.100.0/24", "boto3")  # late record
    facts = book.get("ASIA1")
    assert (facts.issued_ns, facts.issued_by, facts.first_use_ns, facts.uses) == (100, "ec2.amazonaws.com", 150, 2)
    assert facts.networks == ("10.0.1.0/24", "198.51.100.0/24") and facts.clients == ("aws-cli", "boto3")
    book.issued("ASIA1", 90, "someone-else", "x", None)  # an earlier issuance record wins...
    book.issued("ASIA1", 300, "later", "y", None)        # ...a later one (a retry) does not
    assert book.get("ASIA1").issued_to == "someone-else"


def test_bounded_in_credentials_networks_and_text():
    book = CredentialBook(capacity=100)
    for n in range(1_000):
        book.used(f"key-{n}", n, "id", f"10.{n % 250}.0.0/24", "c")
    assert len(book) <= 100
    assert book.get("key-999") is not None and book.get("key-0") is None
    for n in range(50):
        book.used("busy", n, "id", f"net-{n}", f"client-{n}")
    facts = book.get("busy")
    assert len(facts.networks) == len(facts.clients) == MAX_SEEN
    book.used("k" * 10_000, 1, "i" * 10_000, "n" * 10_000, None)
    long = book.get("k" * 256)
    assert long is not None and len(long.first_user) == 256 and len(long.networks[0]) == 256


def test_an_older_generation_credential_is_promoted_when_used_again():
    book = CredentialBook(capacity=4)
    book.used("a", 1, "id", "n1", "c")
    book.used("b", 2, "id", "n1", "c")
    book.used("c", 3, "id", "n1", "c")  # a and b move to the older generation
    book.used("a", 4, "id", "n2", "c")
    book.used("d", 5, "id", "n1", "c")
    book.used("e", 6, "id", "n1", "c")  # the older generation (b) is forgotten; a was promoted
    assert book.get("a").networks == ("n1", "n2") and book.get("a").uses == 2
    assert book.get("b") is None


def test_state_round_trips_through_json():
    book = CredentialBook()
    book.issued("k1", 1, "to", "by", "10.0.0.0/24")
    book.used("k1", 2, "id", "10.0.0.0/24", "aws-cli")
    book.used("k2", 3, "id", None, None)
    copy = CredentialBook()
    copy.restore(json.loads(json.dumps(book.state())))
    assert copy.get("k1") == book.get("k1") and copy.get("k2") == book.get("k2") and len(copy) == 2
