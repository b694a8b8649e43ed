"""Which hot modules run compiled, and a guard that never lets a stale compiled module run.

``setup.py`` may compile the hot modules with Cython and records the SHA-256 of each source it
compiled in ``_compiled_sources.json``. Python prefers an extension module over a ``.py`` of the
same name, so after an edit to an editable install the old compiled code would silently run.
The finder installed here loads the source instead whenever it no longer matches what was
compiled (and always when ``NHI_PURE_PYTHON`` is set), so the code that runs is the code you read.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys

PACKAGE = "otel_processor"
MANIFEST = os.path.join(os.path.dirname(__file__), "_compiled_sources.json")
log = logging.getLogger(__name__)


def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


class SourceWhenStale(importlib.abc.MetaPathFinder):
    def __init__(self, compiled: dict[str, str], pure: bool):
        self.compiled = compiled  # module name -> SHA-256 of the source it was compiled from
        self.pure = pure
        self.stale: list[str] = []

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(PACKAGE + ".") or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        source = os.path.join(path[0], leaf + ".py")
        if not any(os.path.exists(os.path.join(path[0], leaf + suffix))
                   for suffix in importlib.machinery.EXTENSION_SUFFIXES) or not os.path.exists(source):
            return None  # not compiled: the normal import
        digest = self.compiled.get(fullname)
        if not self.pure and digest is not None and _sha256(source) == digest:
            return None  # compiled from exactly this source: the normal import loads it
        if not self.pure:
            self.stale.append(fullname)
            log.warning("%s changed since it was compiled; running its source (slower). "
                        "Run `pip install -e .` again to recompile.", fullname)
        return importlib.util.spec_from_file_location(fullname, source)


def install() -> SourceWhenStale:
    try:
        with open(MANIFEST, encoding="utf-8") as fh:
            compiled = json.load(fh)
    except (OSError, ValueError):
        compiled = {}  # nothing was compiled, or it was lost: no compiled module is trusted
    finder = SourceWhenStale(compiled, pure=bool(os.environ.get("NHI_PURE_PYTHON")))
    sys.meta_path.insert(0, finder)
    return finder


def optional_extension(name: str):
    """A compiled-only module (a ``.pyx`` with no ``.py`` twin), or None when it is not built,
    was built from another version of its source, or ``NHI_PURE_PYTHON`` is set."""
    if os.environ.get("NHI_PURE_PYTHON"):
        return None
    try:
        with open(MANIFEST, encoding="utf-8") as fh:
            digest = json.load(fh).get(name)
    except (OSError, ValueError):
        return None
    source = os.path.join(os.path.dirname(__file__), *name.split(".")[1:]) + ".pyx"
    if digest is None or _sha256(source) != digest:
        if digest is not None:
            log.warning("%s changed since it was compiled; not using it (slower). "
                        "Run `pip install -e .` again to recompile.", name)
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def hot_path() -> str:
    """One line for start-up output: whether the hot path runs compiled."""
    from . import pipeline  # noqa: F401 - imports every hot module

    compiled = compiled_modules()
    if not compiled:
        return "hot path: pure Python (no compiled build; see setup.py)"
    return f"hot path: compiled ({len(compiled)} modules)"


def compiled_modules() -> list[str]:
    """The hot modules imported so far that run as compiled extensions."""
    return sorted(name for name, module in list(sys.modules.items())
                  if name.startswith(PACKAGE + ".") and str(getattr(module, "__file__", "")).endswith((".so", ".pyd")))
