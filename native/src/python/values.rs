//! Values the reader found, made Python values.

use std::cell::RefCell;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use super::{read_error, ReadAsPython};
use crate::read::{self, Value};
use crate::wire::{fnv, length, ReadError};

pub(super) const MAX_NAME: usize = 64;
pub(super) const NAME_SLOTS: usize = 1024;

/// One slot of the name cache: a key's bytes and the string made of them.
type NameSlot = Option<(Box<[u8]>, Py<PyString>)>;

thread_local! {
    // Map keys of vendor bodies repeat on every record (`eventSource`, `userIdentity`...): each
    // short ASCII key becomes a Python string once per thread, so a record's keys cost a hash and
    // a comparison instead of a new string each. Fixed size, overwritten on collision: hostile
    // keys cost what they would without it.
    static NAMES: RefCell<Vec<NameSlot>> = RefCell::new((0..NAME_SLOTS).map(|_| None).collect());
}

pub(super) fn text<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyString>> {
    match std::str::from_utf8(raw) {
        Ok(s) => Ok(PyString::new(py, s)),
        Err(_) => Err(ReadAsPython::new_err("a string that is not UTF-8 (protobuf refuses it)")),
    }
}

pub(super) fn name<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyString>> {
    if raw.len() > MAX_NAME || !raw.is_ascii() {
        return text(py, raw);
    }
    let slot = (fnv(raw) as usize) & (NAME_SLOTS - 1);
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some((bytes, cached)) = &names[slot] {
            if &bytes[..] == raw {
                return Ok(cached.bind(py).clone());
            }
        }
        let made = text(py, raw)?;
        names[slot] = Some((raw.into(), made.clone().unbind()));
        Ok(made)
    })
}

pub(super) fn to_python<'py>(py: Python<'py>, value: &Value<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Unset => py.None().into_bound(py),
        Value::Str(raw) => text(py, raw)?.into_any(),
        Value::Bytes(raw) => PyBytes::new(py, raw).into_any(),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Double(d) => d.into_pyobject(py)?.into_any(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Map(pairs) => {
            let dict = PyDict::new(py);
            for (key, item) in pairs {
                dict.set_item(name(py, key)?, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// A wanted attribute's AnyValue: strings and integers decoded here, anything else by the
/// protobuf runtime (`anyvalue.to_python`), exactly as the reference reads it.
pub(super) fn attribute_value<'py>(
    py: Python<'py>,
    buf: &[u8],
    start: usize,
    end: usize,
) -> PyResult<Bound<'py, PyAny>> {
    if start == end {
        return Ok(py.None().into_bound(py));
    }
    let fast = (|| -> Result<Option<Value<'_>>, ReadError> {
        let (tag, pos) = crate::wire::varint(buf, start, end)?;
        if tag == 0x0A {
            let (s, e) = length(buf, pos, end)?;
            return Ok((e == end).then_some(Value::Str(&buf[s..e])));
        }
        if tag == 0x18 {
            let (n, next) = crate::wire::varint(buf, pos, end)?;
            return Ok((next == end).then_some(Value::Int(n as i64)));
        }
        Ok(None)
    })();
    match fast {
        Ok(Some(value)) => to_python(py, &value),
        _ => protobuf_value(py, &buf[start..end]),
    }
}

pub(super) static PROTOBUF_READER: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

pub(super) fn protobuf_value<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let (parse, convert) = PROTOBUF_READER.get_or_try_init(py, || -> PyResult<_> {
        let any_value =
            py.import("opentelemetry.proto.common.v1.common_pb2")?.getattr("AnyValue")?.getattr("FromString")?;
        let to_python = py.import("otel_processor.anyvalue")?.getattr("to_python")?;
        Ok((any_value.unbind(), to_python.unbind()))
    })?;
    let message = parse.call1(py, (PyBytes::new(py, raw),))?;
    convert.bind(py).call1((message,))
}

/// A serialized AnyValue as str, int, float, bool, bytes, list or dict (None when unset).
#[pyfunction]
pub(super) fn any_value<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let value = read::any_value(data, 0, data.len(), 0).map_err(|e| read_error(e, None))?;
    to_python(py, &value)
}

/// The AnyValue whose length prefix is at `at` in `data` (a log record's body, where the reader
/// found it in the request), as `any_value` reads it; None when longer than `limit` bytes.
#[pyfunction]
pub(super) fn body_value<'py>(py: Python<'py>, data: &[u8], at: i64, limit: i64) -> PyResult<Bound<'py, PyAny>> {
    let at = usize::try_from(at)
        .ok()
        .filter(|&a| a < data.len())
        .ok_or_else(|| PyValueError::new_err("no body at that position"))?;
    let (start, end) = length(data, at, data.len()).map_err(|e| read_error(e, None))?;
    if i64::try_from(end - start).unwrap_or(i64::MAX) > limit {
        return Ok(py.None().into_bound(py));
    }
    let value = read::any_value(data, start, end, 0).map_err(|e| read_error(e, None))?;
    to_python(py, &value)
}
