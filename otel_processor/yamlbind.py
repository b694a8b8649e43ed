"""Bind YAML onto dataclasses, keeping line numbers so that every error names file and line.

Used for the processor config, the identity catalog and the simulator's scenarios: one loader,
one error format. Unknown keys are errors (a misspelt setting silently ignored is how a
detection gets switched off in production).

May import: errors
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError

T = TypeVar("T")


def compose(text: str, filename: str) -> yaml.Node | None:
    """Parse YAML text into a node tree; syntax errors become ConfigError with the line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", filename, line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", filename) from None


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def scalar_value(node: yaml.Node, filename: str) -> Any:
    """The Python value of a scalar node, resolved as yaml.safe_load would."""
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError("expected a single value", filename, line_of(node))
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def plain_value(node: yaml.Node, filename: str) -> Any:
    """Any node as plain Python data (dict, list, scalar)."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid value: {exc}", filename, line_of(node)) from None
    finally:
        loader.dispose()


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(node: yaml.Node, tp: Any, filename: str, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if isinstance(node, yaml.ScalarNode) and scalar_value(node, filename) is None:
            if len(args) != len(get_args(tp)):
                return None
        errors = []
        for arg in args:
            try:
                return _convert(node, arg, filename, path)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(errors[0] if errors else f"{path}: bad value", filename, line_of(node))
    if dataclasses.is_dataclass(tp):
        return bind(node, tp, filename, path)
    if origin in (list, tuple):
        if not isinstance(node, yaml.SequenceNode):
            raise ConfigError(f"{path}: expected a list", filename, line_of(node))
        (item_type, *_rest) = get_args(tp) or (Any,)
        items = [_convert(child, item_type, filename, f"{path}[{i}]") for i, child in enumerate(node.value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{path}: expected a mapping", filename, line_of(node))
        key_type, value_type = get_args(tp) or (str, Any)
        return {
            str(scalar_value(k, filename)): _convert(v, value_type, filename, f"{path}.{scalar_value(k, filename)}")
            for k, v in node.value
        }
    if tp is Any:
        return plain_value(node, filename)
    value = scalar_value(node, filename)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp in (int, float, str, bool) and not (type(value) is tp):
        raise ConfigError(
            f"{path}: expected {_describe(tp)}, got {value!r}", filename, line_of(node)
        )
    return value


def bind(node: yaml.Node | None, cls: type[T], filename: str, path: str = "") -> T:
    """Build ``cls`` (a dataclass) from a mapping node, then call its ``validate()`` if any."""
    if node is None:
        obj = cls()
    else:
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{path or 'top level'}: expected a mapping", filename, line_of(node))
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        kwargs: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(scalar_value(key_node, filename))
            where = f"{path}.{key}" if path else key
            if key not in fields:
                known = ", ".join(sorted(fields))
                raise ConfigError(f"unknown setting '{where}' (known here: {known})", filename, line_of(key_node))
            kwargs[key] = _convert(value_node, hints[key], filename, where)
        missing = [name for name, f in fields.items() if name not in kwargs
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            where = f"{path}: " if path else ""
            raise ConfigError(f"{where}{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required",
                              filename, line_of(node))
        try:
            obj = cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{path or 'top level'}: {exc}", filename, line_of(node)) from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            if exc.filename is None:
                raise ConfigError(exc.problem, filename, line_of(node) if node is not None else None) from None
            raise
        except ValueError as exc:
            raise ConfigError(str(exc), filename,
                              line_of(node) if node is not None else None) from None
    return obj


def load(text: str, cls: type[T], filename: str) -> T:
    return bind(compose(text, filename), cls, filename)


def load_file(path: str, cls: type[T]) -> T:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path) from None
    return load(text, cls, path)
