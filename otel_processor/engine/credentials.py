"""What is known about each credential (``nhi.credential.id``), apart from the identity holding it.

A credential is not an identity: baselines stay per identity. But where a credential was issued
and to whom, when it was first used and from which networks and clients it has been used are facts
about the credential, and they answer questions no identity baseline can: is this instance key
used somewhere other than the instance it was issued to, was this new secret used from elsewhere
minutes after somebody created it. Issuance records (CloudTrail ``AssumeRole`` by a service, an
Entra credential added to an application, a GitHub token created, a Kubernetes TokenRequest)
fill the issuance half; every record naming a credential fills the use half.

Bounded: at most ``capacity`` credentials (two generations: when the newer holds half, the older is
forgotten), at most ``MAX_SEEN`` networks and clients kept per credential.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SEEN = 8
MAX_TEXT = 256


@dataclass(slots=True)
class CredentialFacts:
    issued_ns: int = 0
    issued_to: str = ""       # the identity (or role session) it was issued to
    issued_by: str = ""       # the service or identity that created it
    issued_from: str = ""     # the network it was issued from, when one is known
    first_use_ns: int = 0
    first_user: str = ""      # the identity that used it first
    uses: int = 0
    # The first MAX_SEEN distinct networks and client families, as tuples: most credentials are
    # used from one place by one client, and a tuple of one costs less than a list to build and
    # to keep (a new temporary key per record is the common case).
    networks: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()

    def state(self) -> list:
        return [self.issued_ns, self.issued_to, self.issued_by, self.issued_from, self.first_use_ns,
                self.first_user, self.uses, list(self.networks), list(self.clients)]

    @classmethod
    def from_state(cls, s: list) -> "CredentialFacts":
        return cls(int(s[0]), str(s[1]), str(s[2]), str(s[3]), int(s[4]), str(s[5]), int(s[6]),
                   tuple(str(x) for x in s[7])[:MAX_SEEN], tuple(str(x) for x in s[8])[:MAX_SEEN])


class CredentialBook:
    """Facts per credential id. A credential seen once, in use, is kept as a plain tuple
    ``(first use, user, network, client)`` and becomes a CredentialFacts when more is learnt: a
    temporary key per call is the common case, and a tuple is the cheapest thing to build and
    keep for it."""

    def __init__(self, capacity: int = 50_000):
        self.capacity = capacity
        self._recent: dict[str, CredentialFacts | tuple] = {}
        self._older: dict[str, CredentialFacts | tuple] = {}

    def __len__(self) -> int:
        return len(self._recent) + len(self._older)

    def get(self, credential_id: str) -> CredentialFacts | None:
        found = self._recent.get(credential_id)
        if found is None:
            found = self._older.get(credential_id)
        return _facts_of(found) if isinstance(found, tuple) else found

    def _facts(self, credential_id: str) -> CredentialFacts:
        """The credential's facts object (made, or promoted from the older generation or from a
        first-use tuple)."""
        credential_id = credential_id[:MAX_TEXT]
        found = self._recent.get(credential_id)
        if found is None:
            found = self._older.pop(credential_id, None)
            if found is None:
                found = CredentialFacts()
            elif isinstance(found, tuple):
                found = _facts_of(found)
            self._add(credential_id, found)
        elif isinstance(found, tuple):
            found = self._recent[credential_id] = _facts_of(found)
        return found

    def _add(self, credential_id: str, facts) -> None:
        if len(self._recent) >= self.capacity // 2:
            self._older, self._recent = self._recent, {}
        self._recent[credential_id] = facts

    def issued(self, credential_id: str, t: int, issued_to: str, issued_by: str, network: str | None) -> None:
        facts = self._facts(credential_id)
        if facts.issued_ns and facts.issued_ns <= t:
            return  # the first issuance is the one that counts (a record seen twice, a retry)
        facts.issued_ns, facts.issued_to = t, issued_to[:MAX_TEXT]
        facts.issued_by, facts.issued_from = issued_by[:MAX_TEXT], (network or "")[:MAX_TEXT]

    def used(self, credential_id: str, t: int, identity_id: str, network: str | None, client: str | None) -> None:
        if (credential_id not in self._recent and credential_id not in self._older
                and len(credential_id) <= MAX_TEXT):
            self._add(credential_id, (t, identity_id[:MAX_TEXT], (network or "")[:MAX_TEXT], (client or "")[:MAX_TEXT]))
            return
        facts = self._facts(credential_id)
        if not facts.first_use_ns or t < facts.first_use_ns:
            facts.first_use_ns, facts.first_user = t, identity_id[:MAX_TEXT]
        facts.uses += 1
        if network and network not in facts.networks and len(facts.networks) < MAX_SEEN:
            facts.networks += (network[:MAX_TEXT],)
        if client and client not in facts.clients and len(facts.clients) < MAX_SEEN:
            facts.clients += (client[:MAX_TEXT],)

    def state(self) -> list:
        return [[[k, _state_of(v)] for k, v in self._older.items()], [[k, _state_of(v)] for k, v in self._recent.items()]]

    def restore(self, s: list) -> None:
        self._older = {str(k): CredentialFacts.from_state(v) for k, v in s[0]} if s else {}
        self._recent = {str(k): CredentialFacts.from_state(v) for k, v in s[1]} if s else {}


def _facts_of(first_use: tuple) -> CredentialFacts:
    t, user, network, client = first_use
    return CredentialFacts(0, "", "", "", t, user, 1, (network,) if network else (), (client,) if client else ())


def _state_of(value) -> list:
    return (_facts_of(value) if isinstance(value, tuple) else value).state()
