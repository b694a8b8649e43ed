"""The identity catalog: what the organisation declares about its non-human identities.

Optional. An entry overrides the kind resolution would infer, adds owner, environment and peer
group, and declares expectations (allowed actions, targets, source networks) that the engine's
catalog detector holds the identity to. Example: ``otel_processor/testdata/catalog.yaml``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..model import IDENTITY_KINDS
from ..yamlbind import load_file


@dataclass
class CatalogEntry:
    principal: str
    kind: str | None = None
    owner: str | None = None
    environment: str | None = None
    group: str | None = None
    expected_actions: tuple[str, ...] = ()
    expected_targets: tuple[str, ...] = ()
    expected_networks: tuple[str, ...] = ()

    def validate(self) -> None:
        if not self.principal:
            raise ValueError("principal must not be empty")
        if self.kind is not None and self.kind not in IDENTITY_KINDS:
            raise ValueError(f"kind must be one of {', '.join(IDENTITY_KINDS)}, got {self.kind!r}")
        for cidr in self.expected_networks:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"expected_networks: {cidr!r} is not a CIDR network") from None


@dataclass
class Catalog:
    identities: list[CatalogEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_principal = {e.principal: e for e in self.identities}

    def lookup(self, principal: str) -> CatalogEntry | None:
        return self._by_principal.get(principal)


def load_catalog(path: str) -> Catalog:
    """Read a catalog file; a malformed one raises ConfigError naming file, line and problem."""
    return load_file(path, Catalog)
