"""Which hot modules run native or compiled, and a guard that never lets a stale build run.

The native core (``otel_processor._native``, Rust) carries a digest of the crate's sources; when
the crate is beside the package (an editable install) and its sources no longer match, the
reference core runs instead (``native_module``).

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


NATIVE = PACKAGE + "._native"
CRATE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "native")
_native_said: list[str] = []  # why the native core does not run, once said


def native_source_digest(crate: str = CRATE) -> str | None:
    """FNV-1a over the crate's ``src/**/*.rs`` and ``Cargo.toml`` (relative path, a NUL, the
    bytes; in path order): the walk ``native/build.rs`` embeds as ``SOURCE_DIGEST``. None when
    the crate is not here (an install from a wheel)."""
    names = []
    for folder, _dirs, files in os.walk(os.path.join(crate, "src")):
        names += [os.path.relpath(os.path.join(folder, f), crate).replace(os.sep, "/") for f in files if f.endswith(".rs")]
    if not names:
        return None
    h = 0xCBF29CE484222325
    for name in sorted(names + ["Cargo.toml"]):
        with open(os.path.join(crate, name), "rb") as fh:
            for b in name.encode() + b"\0" + fh.read():
                h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def native_module():
    """The native core, or None (with one line saying why, once) when it was not built, was
    built from other sources than the crate beside the package, or ``NHI_PURE_PYTHON`` is set:
    the reference core then runs."""
    if _pure_setting(os.environ.get("NHI_PURE_PYTHON", "")) is True:
        return None
    try:
        module = importlib.import_module(NATIVE)
    except ImportError as exc:
        _say_once(f"native core not built ({exc.msg}); the reference core runs. Install with cargo on "
                  "the PATH (`pip install -e .`) to build it")
        return None
    expected = native_source_digest()
    if expected is not None and getattr(module, "SOURCE_DIGEST", None) != expected:
        _say_once(f"{CRATE} changed since the native core was built; the reference core runs (slower). "
                  "Run `pip install -e .` again to rebuild it")
        return None
    return module


def _say_once(line: str) -> None:
    if not _native_said:
        _native_said.append(line)
        log.warning(line)


def native_status() -> str:
    """One line for start-up output: which core reads the wire."""
    if sys.modules.get(NATIVE) is not None and not _native_said:
        return "native core: wire reader and masking (Rust)"
    return "native core: not running (" + (_native_said[0] if _native_said else "NHI_PURE_PYTHON is set") + ")"


def hot_path() -> str:
    """One line for start-up output: whether the hot path runs compiled (call it once the
    pipeline is imported: it reports the modules loaded so far)."""
    compiled = compiled_modules()
    if not compiled:
        return "hot path: pure Python (no compiled build; see setup.py); " + native_status()
    return f"hot path: compiled ({len(compiled)} modules); " + native_status()


def compiled_modules() -> list[str]:
    """The hot modules imported so far that run as compiled extensions."""
    return sorted(name for name, module in list(sys.modules.items())
                  if name.startswith(PACKAGE + ".") and str(getattr(module, "__file__", "")).endswith((".so", ".pyd")))
