//! Requests: the schema, reading a request (for the protobuf path and for the spliced path),
//! splicing, counting records.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::keys::{with_keys, KeyClassifier, KeyTable};
use super::read_error;
use super::triggers::triggers;
use super::values::{attribute_value, name, text};
use crate::read::{self, Capture, Captured, Captures, Extras, RecordRead};
use crate::schema::{FieldSpec, Layout};

/// Field kinds per message type (`pipeline.attributes.wire_schema`).
#[pyclass(frozen, module = "otel_processor._native")]
pub(super) struct Schema(crate::schema::Schema);

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

pub(super) fn record_tuple<'py>(py: Python<'py>, buf: &[u8], read: &RecordRead) -> PyResult<Bound<'py, PyTuple>> {
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
pub(super) fn read_request<'py>(
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
pub(super) fn scan_request(
    py: Python<'_>,
    data: &[u8],
    sc: &Schema,
    keys: &KeyClassifier,
) -> PyResult<(Vec<u32>, bool)> {
    let triggers = triggers();
    with_keys(py, keys, |judge| read::Reader::new(data, &sc.0, &triggers, judge).scan())
}

/// One serialized span or log record (of the schema's record type), for tests.
#[pyfunction]
pub(super) fn read_record<'py>(
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
pub(super) struct RecordFields {
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

pub(super) fn captured_value<'py>(
    py: Python<'py>,
    buf: &[u8],
    how: u8,
    value: Captured,
) -> PyResult<Bound<'py, PyAny>> {
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

pub(super) fn wanted_dict<'py>(py: Python<'py>, buf: &[u8], wanted: &[read::Wanted]) -> PyResult<Bound<'py, PyDict>> {
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
pub(super) fn read_views<'py>(
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
pub(super) fn splice<'py>(
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
pub(super) fn count_entries(data: &[u8], path: Vec<u32>, stop_after: u64) -> PyResult<u64> {
    if path.is_empty() || path.len() > 8 {
        return Err(PyValueError::new_err("a path of 1 to 8 field numbers"));
    }
    Ok(read::count_entries(data, &path, stop_after))
}
