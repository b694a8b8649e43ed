"""The optional compiled build never runs code that differs from the source beside it."""

from __future__ import annotations

import hashlib
import importlib.machinery

from otel_processor._compiled import SourceWhenStale


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
