//! The Python module `otel_processor._native`: the reader and the triggers behind the API that
//! `pipeline.attributes`, `pipeline.vendor` and `hosts.serve.admission` call (the API of the
//! Cython `_wire` module it replaces, so the reference path and its tests did not change).
//!
//! Everything here converts: Python values in, plain Rust data through the reader, Python
//! values out. No `unsafe` is written here; PyO3 holds the interpreter's rules.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::key_cache::KeyCache;
use crate::read::{self, Action, Capture, Captured, Captures, Extras, KeyJudge, RecordRead, Value};
use crate::schema::{FieldSpec, Layout};
use crate::triggers::Triggers;
use crate::wire::{fnv, length, ReadError};

create_exception!(
    _native,
    ReadAsPython,
    PyValueError,
    "The request is valid but this reader would not read it exactly as protobuf does."
);

static TRIGGERS: LazyLock<RwLock<Arc<Triggers>>> = LazyLock::new(|| RwLock::new(Arc::new(Triggers::empty())));

fn triggers() -> Arc<Triggers> {
    Arc::clone(&TRIGGERS.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

fn to_bytes_list(words: Vec<String>) -> Vec<Vec<u8>> {
    words.into_iter().map(String::into_bytes).collect()
}

/// The triggers from the secrets table (`outputs.redact` passes the lists it builds its own
/// trigger from). Prefixes keep their case; words are compared lower case.
#[pyfunction]
fn configure_triggers(
    prefixes: Vec<String>,
    assignment_words: Vec<String>,
    whole_words: Vec<String>,
    space_words: Vec<String>,
) {
    let built = Triggers::new(
        &to_bytes_list(prefixes),
        &to_bytes_list(assignment_words),
        &to_bytes_list(whole_words),
        &to_bytes_list(space_words),
    );
    *TRIGGERS.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(built);
}

/// The masking triggers on a str (as UTF-8) or bytes.
#[pyfunction]
fn suspicious(data: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(text) = data.cast::<PyString>() {
        // surrogates (which UTF-8 cannot hold) are encoded as Python's "surrogatepass" does
        let encoded = text.call_method1("encode", ("utf-8", "surrogatepass"))?;
        return Ok(triggers().suspicious(encoded.cast::<PyBytes>()?.as_bytes()));
    }
    let raw: Vec<u8> = data.extract()?;
    Ok(triggers().suspicious(&raw))
}

fn read_error(err: ReadError, judge_error: Option<PyErr>) -> PyErr {
    match err {
        ReadError::Malformed(why) => PyValueError::new_err(why),
        ReadError::ReadAsPython(why) => ReadAsPython::new_err(why),
        ReadError::Judge => judge_error.unwrap_or_else(|| PyValueError::new_err("the key classifier failed")),
    }
}

/// A key -> action table (1 decode, 2 credential, 3 ours).
#[pyclass(frozen, module = "otel_processor._native")]
struct KeyTable(read::KeyTable);

#[pymethods]
impl KeyTable {
    #[new]
    fn new(table: HashMap<String, u8>) -> PyResult<KeyTable> {
        let mut entries = Vec::with_capacity(table.len());
        for (key, code) in table {
            let action =
                Action::from_code(code).ok_or_else(|| PyValueError::new_err(format!("action {code} for {key:?}")))?;
            entries.push((key.into_bytes(), action));
        }
        Ok(KeyTable(read::KeyTable::new(entries)))
    }
}

/// `classify(key) -> truthy` (the key holds a credential), remembered by the key's exact bytes
/// (`KeyCache`); keys it cannot remember are asked anew every time.
#[pyclass(frozen, module = "otel_processor._native")]
struct KeyClassifier {
    classify: Py<PyAny>,
    answers: RwLock<KeyCache>,
}

#[pymethods]
impl KeyClassifier {
    #[new]
    fn new(classify: Py<PyAny>) -> KeyClassifier {
        KeyClassifier { classify, answers: RwLock::new(KeyCache::new()) }
    }
}

/// The classifier as the reader asks it with the interpreter held: a key not remembered is
/// classified by the Python callable then and there. The cache's lock is never held while Python
/// runs: the callable may let another thread in, which may read with the same classifier.
struct PyJudge<'a, 'py> {
    py: Python<'py>,
    classifier: &'a KeyClassifier,
    error: Option<PyErr>,
}

impl KeyJudge for PyJudge<'_, '_> {
    fn holds_credential(&mut self, key: &[u8]) -> Result<bool, ReadError> {
        if let Some(known) = self.classifier.answers.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key) {
            return Ok(known);
        }
        let Ok(text) = std::str::from_utf8(key) else {
            return Err(ReadError::ReadAsPython("a key that is not UTF-8"));
        };
        let answer = self.classifier.classify.call1(self.py, (text,)).and_then(|v| v.is_truthy(self.py));
        match answer {
            Ok(found) => {
                self.classifier.answers.write().unwrap_or_else(|poisoned| poisoned.into_inner()).put(key, found);
                Ok(found)
            }
            Err(err) => {
                self.error = Some(err);
                Err(ReadError::Judge)
            }
        }
    }
}

/// Keys not yet remembered, noted (at most `MAX_MISSES`) for the Python side to classify.
const MAX_MISSES: usize = 256;

/// The classifier as the reader asks it with the interpreter released: remembered answers only;
/// a key not remembered is noted and answered "no", and the walk's result is then not used.
struct CachedJudge<'a> {
    cache: &'a KeyCache,
    misses: Vec<Vec<u8>>,
}

impl KeyJudge for CachedJudge<'_> {
    fn holds_credential(&mut self, key: &[u8]) -> Result<bool, ReadError> {
        if let Some(known) = self.cache.get(key) {
            return Ok(known);
        }
        if self.misses.len() < MAX_MISSES && !self.misses.iter().any(|m| m == key) {
            self.misses.push(key.to_vec());
        }
        Ok(false)
    }
}

/// Runs a walk over a request with the interpreter released (other threads run meanwhile),
/// answering keys from the classifier's cache. When the walk met keys the cache does not hold,
/// they are classified (the interpreter held) and the walk runs again; a key the cache cannot
/// hold (it is full) is asked in a last walk with the interpreter held. At most three walks.
fn with_keys<T: Send>(
    py: Python<'_>,
    keys: &KeyClassifier,
    walk: impl Fn(&mut dyn KeyJudge) -> Result<T, ReadError> + Sync,
) -> PyResult<T> {
    for _ in 0..2 {
        let (result, misses) = py.detach(|| {
            let cache = keys.answers.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut judge = CachedJudge { cache: &cache, misses: Vec::new() };
            let result = walk(&mut judge);
            (result, judge.misses)
        });
        if misses.is_empty() {
            return result.map_err(|e| read_error(e, None));
        }
        let mut judge = PyJudge { py, classifier: keys, error: None };
        for key in &misses {
            judge.holds_credential(key).map_err(|e| read_error(e, judge.error.take()))?;
        }
    }
    let mut judge = PyJudge { py, classifier: keys, error: None };
    let result = walk(&mut judge);
    result.map_err(|e| read_error(e, judge.error.take()))
}

/// Field kinds per message type (`pipeline.attributes.wire_schema`).
#[pyclass(frozen, module = "otel_processor._native")]
struct Schema(crate::schema::Schema);

#[pymethods]
impl Schema {
    #[new]
    #[pyo3(signature = (types, entry, scope, record, scopes_field, records_field, attributes_field, anyvalue, body_field=0))]
    #[allow(clippy::too_many_arguments)] // the keyword arguments wire_schema gives
    fn new(
        types: Vec<Vec<FieldSpec>>,
        entry: usize,
        scope: usize,
        record: i64,
        scopes_field: u64,
        records_field: i64,
        attributes_field: i64,
        anyvalue: usize,
        body_field: u64,
    ) -> PyResult<Schema> {
        let layout = Layout {
            entry,
            scope,
            record: usize::try_from(record).ok(),
            scopes_field,
            records_field: u64::try_from(records_field).ok(),
            attributes_field: u64::try_from(attributes_field).ok(),
            anyvalue,
            body_field,
        };
        crate::schema::Schema::new(&types, layout).map(Schema).map_err(|e| PyValueError::new_err(e.0))
    }
}

// -- values ------------------------------------------------------------------------------------

const MAX_NAME: usize = 64;
const NAME_SLOTS: usize = 1024;

/// One slot of the name cache: a key's bytes and the string made of them.
type NameSlot = Option<(Box<[u8]>, Py<PyString>)>;

thread_local! {
    // Map keys of vendor bodies repeat on every record (`eventSource`, `userIdentity`...): each
    // short ASCII key becomes a Python string once per thread, so a record's keys cost a hash and
    // a comparison instead of a new string each. Fixed size, overwritten on collision: hostile
    // keys cost what they would without it.
    static NAMES: RefCell<Vec<NameSlot>> = RefCell::new((0..NAME_SLOTS).map(|_| None).collect());
}

fn text<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyString>> {
    match std::str::from_utf8(raw) {
        Ok(s) => Ok(PyString::new(py, s)),
        Err(_) => Err(ReadAsPython::new_err("a string that is not UTF-8 (protobuf refuses it)")),
    }
}

fn name<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyString>> {
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

fn to_python<'py>(py: Python<'py>, value: &Value<'_>) -> PyResult<Bound<'py, PyAny>> {
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
fn attribute_value<'py>(py: Python<'py>, buf: &[u8], start: usize, end: usize) -> PyResult<Bound<'py, PyAny>> {
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

static PROTOBUF_READER: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

fn protobuf_value<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
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
fn any_value<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let value = read::any_value(data, 0, data.len(), 0).map_err(|e| read_error(e, None))?;
    to_python(py, &value)
}

/// The AnyValue whose length prefix is at `at` in `data` (a log record's body, where the reader
/// found it in the request), as `any_value` reads it; None when longer than `limit` bytes.
#[pyfunction]
fn body_value<'py>(py: Python<'py>, data: &[u8], at: i64, limit: i64) -> PyResult<Bound<'py, PyAny>> {
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

// -- requests ----------------------------------------------------------------------------------

fn record_tuple<'py>(py: Python<'py>, buf: &[u8], read: &RecordRead) -> PyResult<Bound<'py, PyTuple>> {
    let wanted = wanted_dict(py, buf, &read.wanted)?;
    let dirty = match &read.dirty {
        Some(indices) => PyList::new(py, indices)?.into_any(),
        None => py.None().into_bound(py),
    };
    let body_at = read.body_at.map_or(-1, |at| at as i64);
    PyTuple::new(
        py,
        [
            wanted.into_any(),
            read.special.into_pyobject(py)?.into_any(),
            read.flags.into_pyobject(py)?.into_any(),
            dirty,
            body_at.into_pyobject(py)?.into_any(),
        ],
    )
}

/// Every record's (wanted attributes, special, flags, dirty attribute indices or None, where a
/// map body is or -1) in request order; the indices of resource entries whose own parts need
/// masking; and whether any field is unknown.
#[pyfunction]
fn read_request<'py>(
    py: Python<'py>,
    data: &[u8],
    sc: &Schema,
    table: &KeyTable,
    keys: &KeyClassifier,
) -> PyResult<Bound<'py, PyTuple>> {
    let triggers = triggers();
    let read = with_keys(py, keys, |judge| read::Reader::new(data, &sc.0, &triggers, judge).request(&table.0))?;
    let records = PyList::empty(py);
    for record in &read.records {
        records.append(record_tuple(py, data, record)?)?;
    }
    let unknown = read.unknown.into_pyobject(py)?.to_owned().into_any();
    PyTuple::new(py, [records.into_any(), PyList::new(py, &read.dirty_entries)?.into_any(), unknown])
}

/// For requests read whole by Python (metrics): the resource entries with anything to mask
/// anywhere below them, and whether any field is unknown.
#[pyfunction]
fn scan_request(py: Python<'_>, data: &[u8], sc: &Schema, keys: &KeyClassifier) -> PyResult<(Vec<u32>, bool)> {
    let triggers = triggers();
    with_keys(py, keys, |judge| read::Reader::new(data, &sc.0, &triggers, judge).scan())
}

/// One serialized span or log record (of the schema's record type), for tests.
#[pyfunction]
fn read_record<'py>(
    py: Python<'py>,
    data: &[u8],
    sc: &Schema,
    table: &KeyTable,
    keys: &KeyClassifier,
) -> PyResult<Bound<'py, PyTuple>> {
    let record_type = sc.0.record.ok_or_else(|| PyValueError::new_err("this schema has no record type"))?;
    let triggers = triggers();
    let read = with_keys(py, keys, |judge| {
        read::Reader::new(data, &sc.0, &triggers, judge).record(0, data.len(), record_type, &table.0, 3)
    })?;
    record_tuple(py, data, &read)
}

/// The record fields a host reads without parsing the request: (field number, how, sub-field)
/// with how 1 an int32 or enum, 2 a fixed64, 3 a string, 4 bytes, 5 where a message is (start,
/// end), 6 the int32 sub-field of a message.
#[pyclass(frozen, module = "otel_processor._native")]
struct RecordFields {
    captures: Captures,
    how: Vec<u8>,
}

#[pymethods]
impl RecordFields {
    #[new]
    fn new(spec: Vec<(u64, u8, u64)>) -> PyResult<RecordFields> {
        let mut fields = Vec::with_capacity(spec.len());
        for &(number, how, sub) in &spec {
            let capture = match how {
                1 => Capture::Int32,
                2 => Capture::Fixed64,
                3..=5 => Capture::Range,
                6 => Capture::Int32In(sub),
                _ => return Err(PyValueError::new_err(format!("capture kind {how}"))),
            };
            if number == 0 || number as usize >= crate::schema::MAX_FIELD {
                return Err(PyValueError::new_err(format!("field {number} cannot be captured")));
            }
            fields.push((number, capture));
        }
        Ok(RecordFields { captures: Captures::new(&fields), how: spec.iter().map(|f| f.1).collect() })
    }
}

fn captured_value<'py>(py: Python<'py>, buf: &[u8], how: u8, value: Captured) -> PyResult<Bound<'py, PyAny>> {
    Ok(match (value, how) {
        (Captured::Int(n), _) => n.into_pyobject(py)?.into_any(),
        (Captured::Fixed(n), _) => n.into_pyobject(py)?.into_any(),
        (Captured::Range(s, e), 3) => text(py, &buf[s..e])?.into_any(),
        (Captured::Range(s, e), 4) => PyBytes::new(py, &buf[s..e]).into_any(),
        (Captured::Range(s, e), _) => (s, e).into_pyobject(py)?.into_any(),
        (Captured::Absent, 1 | 2 | 6) => 0i64.into_pyobject(py)?.into_any(),
        (Captured::Absent, 3) => PyString::new(py, "").into_any(),
        (Captured::Absent, 4) => PyBytes::new(py, b"").into_any(),
        (Captured::Absent, _) => py.None().into_bound(py),
    })
}

fn wanted_dict<'py>(py: Python<'py>, buf: &[u8], wanted: &[read::Wanted]) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for w in wanted {
        let value = match w.value {
            Some((s, e)) => attribute_value(py, buf, s, e)?,
            None => py.None().into_bound(py),
        };
        out.set_item(name(py, &buf[w.key.0..w.key.1])?, value)?; // the same few keys on every record
    }
    Ok(out)
}

/// For a host that forwards the request's bytes instead of parsing them (strings checked for
/// UTF-8 as the protobuf runtime checks them): per resource entry (its resource's wanted
/// attributes, its record count); per record, as `read_request` reads it; per record, where
/// `nhi.*` attributes go and where its bytes start and end; per record, the captured fields;
/// the resource entries to mask; whether any field is unknown; the deepest nesting.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // the reader's tables, as read_request takes them, and two more
fn read_views<'py>(
    py: Python<'py>,
    data: &[u8],
    sc: &Schema,
    table: &KeyTable,
    resource_table: &KeyTable,
    keys: &KeyClassifier,
    fields: &RecordFields,
) -> PyResult<Bound<'py, PyTuple>> {
    let triggers = triggers();
    let extras = Extras { captures: fields.captures.clone(), resource: &resource_table.0 };
    let (read, deepest) = with_keys(py, keys, |judge| {
        let mut reader = read::Reader::new(data, &sc.0, &triggers, judge);
        reader.extras = Some(&extras);
        reader.check_utf8 = true;
        let read = reader.request(&table.0)?;
        Ok((read, reader.deepest))
    })?;
    let entries = PyList::empty(py);
    for (resource, count) in &read.entries {
        entries.append((wanted_dict(py, data, resource)?, *count))?;
    }
    let records = PyList::empty(py);
    let places = PyList::empty(py);
    let captured = PyList::empty(py);
    for record in &read.records {
        records.append(record_tuple(py, data, record)?)?;
        places.append((record.insert_at, record.range.0, record.range.1))?;
        let mut values = Vec::with_capacity(fields.how.len());
        for (&how, &value) in fields.how.iter().zip(&record.captured) {
            values.push(captured_value(py, data, how, value)?);
        }
        captured.append(PyTuple::new(py, values)?)?;
    }
    PyTuple::new(
        py,
        [
            entries.into_any(),
            records.into_any(),
            places.into_any(),
            captured.into_any(),
            PyList::new(py, &read.dirty_entries)?.into_any(),
            read.unknown.into_pyobject(py)?.to_owned().into_any(),
            deepest.into_pyobject(py)?.into_any(),
        ],
    )
}

/// The request with `edits` (from, to, bytes) written into its records: a record's `nhi.*`
/// attributes at the offset the reader gave (`read_views`), or a masked record in place of its
/// bytes; edits ascending.
#[pyfunction]
fn splice<'py>(
    py: Python<'py>,
    data: &[u8],
    sc: &Schema,
    edits: Vec<(usize, usize, Vec<u8>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let borrowed: Vec<(usize, usize, &[u8])> = edits.iter().map(|(from, to, b)| (*from, *to, b.as_slice())).collect();
    let out = py.detach(|| crate::splice::splice(data, &sc.0, &borrowed)).map_err(|e| read_error(e, None))?;
    Ok(PyBytes::new(py, &out))
}

/// `admission.count_records` natively: the same walk, the same answer.
#[pyfunction]
fn count_entries(data: &[u8], path: Vec<u32>, stop_after: u64) -> PyResult<u64> {
    if path.is_empty() || path.len() > 8 {
        return Err(PyValueError::new_err("a path of 1 to 8 field numbers"));
    }
    Ok(read::count_entries(data, &path, stop_after))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ReadAsPython", m.py().get_type::<ReadAsPython>())?;
    m.add("SOURCE_DIGEST", env!("NHI_NATIVE_SOURCE_DIGEST"))?;
    m.add_class::<KeyTable>()?;
    m.add_class::<KeyClassifier>()?;
    m.add_class::<Schema>()?;
    m.add_class::<RecordFields>()?;
    m.add_function(wrap_pyfunction!(read_views, m)?)?;
    m.add_function(wrap_pyfunction!(splice, m)?)?;
    m.add_function(wrap_pyfunction!(configure_triggers, m)?)?;
    m.add_function(wrap_pyfunction!(suspicious, m)?)?;
    m.add_function(wrap_pyfunction!(any_value, m)?)?;
    m.add_function(wrap_pyfunction!(body_value, m)?)?;
    m.add_function(wrap_pyfunction!(read_request, m)?)?;
    m.add_function(wrap_pyfunction!(scan_request, m)?)?;
    m.add_function(wrap_pyfunction!(read_record, m)?)?;
    m.add_function(wrap_pyfunction!(count_entries, m)?)?;
    Ok(())
}
