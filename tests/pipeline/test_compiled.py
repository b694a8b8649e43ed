"""The optional native and compiled builds never run code that differs from the source beside
them, and an install without them runs the reference core after saying so once."""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
import subprocess
import sys

import pytest

from otel_processor import _compiled
from otel_processor._compiled import SourceWhenStale
from otel_processor.pipeline.attributes import wire


def _module(tmp_path, text: str = "X = 1\n"):
    source = tmp_path / "hot.py"
    source.write_text(text)
    (tmp_path / ("hot" + importlib.machinery.EXTENSION_SUFFIXES[0])).write_bytes(b"")  # a compiled twin
    return source, hashlib.sha256(source.read_bytes()).hexdigest()


def test_current_compiled_module_is_left_to_the_normal_import(tmp_path):
    _, digest = _module(tmp_path)
    finder = SourceWhenStale({"otel_processor.hot": digest}, pure=False)
    assert finder.find_spec("otel_processor.hot", [str(tmp_path)]) is None
    assert finder.stale == []


def test_edited_source_is_loaded_instead_of_its_stale_compiled_twin(tmp_path):
    source, digest = _module(tmp_path)
    source.write_text("X = 2\n")
    finder = SourceWhenStale({"otel_processor.hot": digest}, pure=False)
    spec = finder.find_spec("otel_processor.hot", [str(tmp_path)])
    assert spec is not None and spec.origin == str(source)
    assert finder.stale == ["otel_processor.hot"]


def test_compiled_module_missing_from_the_manifest_is_not_trusted(tmp_path):
    source, _ = _module(tmp_path)
    spec = SourceWhenStale({}, pure=False).find_spec("otel_processor.hot", [str(tmp_path)])
    assert spec is not None and spec.origin == str(source)


def test_pure_python_setting_always_loads_the_source(tmp_path):
    source, digest = _module(tmp_path)
    spec = SourceWhenStale({"otel_processor.hot": digest}, pure=True).find_spec("otel_processor.hot",
                                                                               [str(tmp_path)])
    assert spec is not None and spec.origin == str(source)


def test_other_packages_and_uncompiled_modules_are_not_touched(tmp_path):
    (tmp_path / "plain.py").write_text("X = 1\n")
    finder = SourceWhenStale({}, pure=True)
    assert finder.find_spec("otel_processor.plain", [str(tmp_path)]) is None
    assert finder.find_spec("somebody_else.hot", [str(tmp_path)]) is None


# -- the native core ------------------------------------------------------------------------------

@pytest.mark.skipif(wire is None, reason="native core not built (setup.py, cargo)")
def test_the_native_module_was_built_from_the_crate_beside_it():
    """The digest build.rs embedded is the one the loader computes over the same files."""
    assert wire.SOURCE_DIGEST == _compiled.native_source_digest()


def test_a_crate_edited_since_the_build_runs_the_reference_core_and_says_so_once(tmp_path, monkeypatch, caplog):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lib.rs").write_text("// edited\n")
    (tmp_path / "Cargo.toml").write_text("[package]\n")
    monkeypatch.setattr(_compiled, "CRATE", str(tmp_path))
    monkeypatch.setattr(_compiled, "_native_said", [])
    monkeypatch.delenv("NHI_PURE_PYTHON", raising=False)
    monkeypatch.setattr(_compiled.importlib, "import_module", lambda name: type("M", (), {"SOURCE_DIGEST": "0"}))
    assert _compiled.native_module() is None and _compiled.native_module() is None
    lines = [r.getMessage() for r in caplog.records if "native core" in r.getMessage()]
    assert len(lines) == 1 and "changed since the native core was built" in lines[0]
    assert "not running" in _compiled.native_status()


def test_an_install_without_the_native_core_says_so_in_one_line_and_runs():
    """As after an install without cargo: the module cannot be imported."""
    code = ("import sys; sys.modules['otel_processor._native'] = None\n"
            "from otel_processor.pipeline import BatchProcessor\n"
            "from otel_processor.pipeline.core import ReferenceCore\n"
            "from otlp_builders import logs\n"
            "data = logs({'service.name': 's'}, {'attrs': {'user.id': 'svc-a'}}).SerializeToString()\n"
            "assert b'nhi.identity.id' in ReferenceCore(BatchProcessor()).process('logs', data).data\n")
    env = {k: v for k, v in os.environ.items() if k != "NHI_PURE_PYTHON"}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(__file__))  # tests/, for otlp_builders
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "native core" in line]
    assert len(said) == 1 and "native core not built" in said[0] and "reference core runs" in said[0]
