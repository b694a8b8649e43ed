"""Who acted: identity resolution (TELEMETRY.md section 1), the identity catalog, credential fingerprints.

- ``rules.py``: one rule per row of the contract's resolution table, in the contract's order.
  Adding a source of identities is adding a rule there.
- ``principals.py``: which principal formats are non-human, and the peer group each implies.
- ``credentials.py``: credential fingerprints (the raw value is never kept).
- ``resolver.py``: walks the rules for a record, with a bounded cache.
- ``catalog.py``: what the organisation declares about its identities (YAML).

May import: model, errors, yamlbind
"""
