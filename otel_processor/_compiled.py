"""Which hot modules run compiled, and a guard that never lets a stale compiled module run.

``setup.py`` may compile the hot modules with Cython and records the SHA-256 of each source it
compiled in ``_compiled_sources.json``. Python prefers an extension module over a ``.py`` of the
same name, so after an edit to an editable install the old compiled code would silently run.
The finder installed here loads the source instead whenever it no longer matches what was
compiled (and always when ``NHI_PURE_PYTHON`` is set), so the code that runs is the code you read.

May import: (no other room)
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


def _has_compiled(directory: str, leaf: str) -> bool:
    return any(os.path.exists(os.path.join(directory, leaf + suffix))
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _pure_setting(value: str) -> bool | frozenset[str]:
    """``NHI_PURE_PYTHON``: unset runs what is compiled; a list of module names
    (``otel_processor.engine.peers,...``) runs just those from source, to measure what compiling
    each gains; any other value runs everything from source."""
    if not value:
        return False
    names = frozenset(n.strip() for n in value.split(",") if n.strip().startswith(PACKAGE + "."))
    return names or True


class SourceWhenStale(importlib.abc.MetaPathFinder):
    def __init__(self, compiled: dict[str, str], pure: bool | frozenset[str]):
        self.compiled = compiled  # module name -> SHA-256 of the source it was compiled from
        self.pure = pure  # True: every module from source; a set: those modules from source
        self.stale: list[str] = []

    def current(self, name: str, source: str) -> bool:
        """Whether the compiled ``name`` beside ``source`` was built from exactly that source and
        may run; a compiled module that may not is noted in ``stale`` and logged."""
        if self.pure is True or (self.pure and name in self.pure):
            return False
        digest = self.compiled.get(name)
        if digest is not None and _sha256(source) == digest:
            return True
        self.stale.append(name)
        log.warning("%s changed since it was compiled; running without its compiled build (slower). "
                    "Run `pip install -e .` again to recompile.", name)
        return False

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(PACKAGE + ".") or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        source = os.path.join(path[0], leaf + ".py")
        if not _has_compiled(path[0], leaf) or not os.path.exists(source):
            return None  # not compiled: the normal import
        if self.current(fullname, source):
            return None  # the normal import loads the compiled module
        return importlib.util.spec_from_file_location(fullname, source)


_FINDER: SourceWhenStale | None = None


def install() -> SourceWhenStale:
    global _FINDER
    try:
        with open(MANIFEST, encoding="utf-8") as fh:
            compiled = json.load(fh)
    except (OSError, ValueError):
        compiled = {}  # nothing was compiled, or it was lost: no compiled module is trusted
    _FINDER = SourceWhenStale(compiled, pure=_pure_setting(os.environ.get("NHI_PURE_PYTHON", "")))
    sys.meta_path.insert(0, _FINDER)
    return _FINDER


def optional_extension(name: str):
    """A compiled-only module (a ``.pyx`` with no ``.py`` twin), or None when it is not built,
    was built from another version of its source, or ``NHI_PURE_PYTHON`` is set."""
    directory = os.path.join(os.path.dirname(__file__), *name.split(".")[1:-1])
    leaf = name.rpartition(".")[2]
    if _FINDER is None or not _has_compiled(directory, leaf) \
            or not _FINDER.current(name, os.path.join(directory, leaf + ".pyx")):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def hot_path() -> str:
    """One line for start-up output: whether the hot path runs compiled (call it once the
    pipeline is imported: it reports the modules loaded so far)."""
    compiled = compiled_modules()
    if not compiled:
        return "hot path: pure Python (no compiled build; see setup.py)"
    return f"hot path: compiled ({len(compiled)} modules)"


def compiled_modules() -> list[str]:
    """The hot modules imported so far that run as compiled extensions."""
    return sorted(name for name, module in list(sys.modules.items())
                  if name.startswith(PACKAGE + ".") and str(getattr(module, "__file__", "")).endswith((".so", ".pyd")))
