"""The docs carry themselves: every relative link in README.md, docs/ and benchmarks/README.md
resolves to a file inside the repository (and its #anchor to a heading there), and no document
sends a reader to a path outside it; the README stays short."""

from __future__ import annotations

import glob
import os
import re

from paths import ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOCUMENTS = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "benchmarks", "README.md"),
             os.path.join(ROOT, "scenarios", "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def _anchors(path: str) -> set[str]:
    out = set()
    for line in open(path, encoding="utf-8"):
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_relative_link_resolves_inside_the_repository():
    broken = []
    for doc in DOCUMENTS:
        text = open(doc, encoding="utf-8").read()
        if "../shared" in text:
            broken.append(f"{doc}: refers to ../shared, which is not beside a clone")
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
            if not resolved.startswith(ROOT + os.sep) and resolved != ROOT:
                broken.append(f"{doc}: {target} leaves the repository")
            elif not os.path.exists(resolved):
                broken.append(f"{doc}: {target} does not exist")
            elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
                broken.append(f"{doc}: {target}: no such heading")
    assert broken == []


def test_the_readme_stays_short():
    assert len(open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()) <= 300
