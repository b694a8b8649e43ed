"""Optional native and compiled builds of the hot path; everything else is in pyproject.toml.

Two accelerators, both optional, both checked against the plain-Python reference they replace:

- the native core (``native/``, Rust through PyO3, built by setuptools-rust when cargo is on the
  PATH): reads the OTLP wire and runs the masking triggers (issue 27 moves the rest of the
  per-record path into it, stage by stage);
- the per-record Python modules (resolution, observation, the batch loop and the behaviour
  engine), compiled unchanged to C extensions by Cython when a C compiler is at hand: about a
  third less work per record, until the engine moves into the native core.

Without cargo, without a compiler, or with ``NHI_PURE_PYTHON=1`` set at install time, nothing is
built and the same code runs as Python (the reference core), which start-up says in one line. A
native or compiled module built from other sources than the ones beside it is never used (see
``otel_processor/_compiled.py``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

# Compiled because it pays: instructions per record saved on the full path, measured with
# benchmarks/compile_gain.py (callgrind; the full path costs about 193,000 compiled, 270,000
# from source). Modules saving under 0.5% (anyvalue, correlator, links, peers, rules,
# attributes) stay Python: compiling them cost install time and bought nothing measurable.
HOT_MODULES = [
    "otel_processor/engine/features.py",        # 19,100 (10%) for these three, which share C types
    "otel_processor/engine/detectors.py",       #   (.pxd files) and are compiled together
    "otel_processor/engine/engine.py",
    "otel_processor/observe/record.py",         # 15,900 (8.2%)
    "otel_processor/outputs/enrich.py",         #  6,900 (3.6%)
    "otel_processor/identity/resolver.py",      #  2,400 (1.2%)
    "otel_processor/pipeline/batch.py",         #  1,200 (0.6%)
    # Vendor audit records read from log bodies (callgrind, batch path, per record: CloudTrail
    # 303,000 -> 266,000, Kubernetes audit 251,000 -> 218,000): the two busiest sources.
    "otel_processor/inputs/record.py",
    "otel_processor/inputs/cloudtrail.py",
    "otel_processor/inputs/kubernetes.py",
    # Reading the body and choosing its profile (CloudTrail per record, batch path: 194,400 ->
    # 190,100 for these two).
    "otel_processor/pipeline/vendor.py",
    "otel_processor/inputs/dispatch.py",
    # First-sight signals run on every non-human record (full path: about 4,700 instructions per
    # record compiled, callgrind).
    "otel_processor/engine/first_sight.py",
]


class OptionalBuildExt(build_ext):
    """A failed compile is a warning, not a failed install: the Python source still runs.

    Records the SHA-256 of every source it compiled, which ``otel_processor/_compiled.py``
    checks before it lets a compiled module load.
    """

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:  # compile the extensions side by side, one per core
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        self.built: dict[str, str] = {}
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler, no headers...
            self._skip(exc)
        target = os.path.dirname(self.get_ext_fullpath("otel_processor.model"))
        os.makedirs(target, exist_ok=True)
        if self.built:
            self.built["(pxd)"] = _pxd_digest()
        with open(os.path.join(target, "_compiled_sources.json"), "w", encoding="utf-8") as fh:
            json.dump(self.built, fh, indent=1, sort_keys=True)

    def build_extension(self, ext) -> None:
        stem = ext.name.replace(".", "/")
        source = stem + ".py" if os.path.exists(stem + ".py") else stem + ".pyx"
        with open(source, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        if self._reuse(ext, digest):
            self.built[ext.name] = digest
            return
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._skip(exc, ext.name)
            return
        self.built[ext.name] = digest

    def _reuse(self, ext, digest: str) -> bool:
        """A second ``pip install -e .`` (the README's test command after its first command)
        compiles nothing that an earlier install compiled from the same source: the module left
        in the source tree is copied where this build expects it. The same C types (.pxd files)
        are compiled into the modules that share them, so a changed .pxd compiles them all."""
        inplace = os.path.join(*ext.name.split(".")[:-1], os.path.basename(self.get_ext_filename(ext.name)))
        if not os.path.exists(inplace) or _previously_compiled().get(ext.name) != digest or _pxd_changed():
            return False
        target = self.get_ext_fullpath(ext.name)
        if os.path.abspath(target) != os.path.abspath(inplace):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self.copy_file(inplace, target)
        return True

    @staticmethod
    def _skip(exc: Exception, name: str = "extensions") -> None:
        print(f"nhi-convergence: not compiling {name} ({exc}); the pure-Python code will run",
              file=sys.stderr)


MANIFEST = os.path.join("otel_processor", "_compiled_sources.json")


@functools.lru_cache(maxsize=None)
def _previously_compiled() -> dict[str, str]:
    """Module name -> SHA-256 of the source the module in the source tree was compiled from."""
    try:
        with open(MANIFEST, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


@functools.lru_cache(maxsize=None)
def _pxd_digest() -> str:
    digest = hashlib.sha256()
    for folder, _dirs, files in sorted(os.walk("otel_processor")):
        for name in sorted(files):
            if name.endswith(".pxd"):
                with open(os.path.join(folder, name), "rb") as fh:
                    digest.update(name.encode() + fh.read())
    return digest.hexdigest()


def _pxd_changed() -> bool:
    return _previously_compiled().get("(pxd)") != _pxd_digest()


def extensions() -> list:
    if os.environ.get("NHI_PURE_PYTHON"):
        return []
    try:
        from Cython.Build import cythonize

        return cythonize(HOT_MODULES, quiet=True, nthreads=os.cpu_count() or 1,
                         compiler_directives={"language_level": 3, "binding": True})
    except Exception as exc:  # noqa: BLE001 - no Cython, or it refused a module: run the source
        OptionalBuildExt._skip(exc)
        return []


def rust_extensions() -> list:
    """The native core, when it is to be built; a failed build (no cargo, no registry) is a
    warning from setuptools-rust and the reference core runs (``optional``)."""
    if os.environ.get("NHI_PURE_PYTHON"):
        return []
    try:
        from setuptools_rust import Binding, RustExtension
    except ImportError as exc:
        OptionalBuildExt._skip(exc, "the native core")
        return []
    return [RustExtension("otel_processor._native", path="native/Cargo.toml", binding=Binding.PyO3,
                          features=["python"], optional=True, py_limited_api="auto", debug=False)]


setup(ext_modules=extensions(), rust_extensions=rust_extensions(), cmdclass={"build_ext": OptionalBuildExt})
