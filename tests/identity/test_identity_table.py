"""docs/identity.md is the identity table users read: every row names a fixture record and the
identity it must be attributed to. Each is replayed here as a Collector delivers it (the record as
the log body), so the table and the code cannot drift apart."""

from __future__ import annotations

import os
import re

import pytest

from paths import ROOT
from vendor_records import attributed, record_of

TABLE = os.path.join(ROOT, "docs", "identity.md")
ROW = re.compile(r"^\| `([^`]+)` \| (?:`([^`]+)`|none \(forwarded unattributed\)) \| (?:`([^`]+)`)? *\|$", re.M)


def rows() -> list[tuple[str, str | None, str | None]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in ROW.finditer(open(TABLE, encoding="utf-8").read())]


@pytest.mark.parametrize("reference, identity, on_behalf_of", rows(), ids=[r[0].rsplit("/", 1)[-1] for r in rows()])
def test_every_row_of_the_identity_table_is_what_the_processor_decides(reference, identity, on_behalf_of):
    got = attributed(record_of(reference))
    assert (got.get("nhi.identity.id"), got.get("nhi.identity.on_behalf_of")) == (identity, on_behalf_of)


def test_the_table_covers_every_source_with_people_beside_the_non_human_identities():
    table = rows()
    assert len(table) >= 60
    people = sum(1 for _, identity, _ in table if identity and identity.startswith("human:"))
    assert 2 * people >= len(table), f"{people} of {len(table)} rows are people: half must be"
    files = {reference.partition("#")[0] for reference, _, _ in table}
    sources = {f.split("/")[3] for f in files if f.startswith("otel_processor/")}
    assert sources == {"azure", "cloudtrail", "entra", "gcp", "github", "kubernetes", "m365"}
    fixtures = os.path.join(ROOT, "tests", "testdata", "identity")
    assert {f"tests/testdata/identity/{n}" for n in os.listdir(fixtures)} <= files, "every identity fixture has a row"
