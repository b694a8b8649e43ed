//! The Python module `otel_processor._native`: the reader and the triggers behind the API that
//! `pipeline.attributes`, `pipeline.views`, `pipeline.vendor` and `hosts.serve.admission` call
//! (the API of the Cython `_wire` module it replaced, and the spliced path's two calls).
//!
//! Everything here converts: Python values in, plain Rust data through the reader, Python
//! values out. No `unsafe` is written here; PyO3 holds the interpreter's rules.
//!
//! - `triggers`: configuring and asking the masking triggers;
//! - `masking`: masking the secrets inside a string;
//! - `keys`: the wanted-key table and the credential-key classifier;
//! - `values`: what the reader found, as Python values;
//! - `requests`: the schema, reading requests, splicing, counting.

mod keys;
mod masking;
mod requests;
mod triggers;
mod values;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::wire::ReadError;

create_exception!(
    _native,
    ReadAsPython,
    PyValueError,
    "The request is valid but this reader would not read it exactly as protobuf does."
);

fn read_error(err: ReadError, judge_error: Option<PyErr>) -> PyErr {
    match err {
        ReadError::Malformed(why) => PyValueError::new_err(why),
        ReadError::ReadAsPython(why) => ReadAsPython::new_err(why),
        ReadError::Judge => judge_error.unwrap_or_else(|| PyValueError::new_err("the key classifier failed")),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ReadAsPython", m.py().get_type::<ReadAsPython>())?;
    m.add("SOURCE_DIGEST", env!("NHI_NATIVE_SOURCE_DIGEST"))?;
    m.add_class::<keys::KeyTable>()?;
    m.add_class::<keys::KeyClassifier>()?;
    m.add_class::<masking::Masker>()?;
    m.add_class::<requests::Schema>()?;
    m.add_class::<requests::RecordFields>()?;
    m.add_function(wrap_pyfunction!(triggers::configure_triggers, m)?)?;
    m.add_function(wrap_pyfunction!(triggers::suspicious, m)?)?;
    m.add_function(wrap_pyfunction!(values::any_value, m)?)?;
    m.add_function(wrap_pyfunction!(values::body_value, m)?)?;
    m.add_function(wrap_pyfunction!(requests::read_request, m)?)?;
    m.add_function(wrap_pyfunction!(requests::scan_request, m)?)?;
    m.add_function(wrap_pyfunction!(requests::read_record, m)?)?;
    m.add_function(wrap_pyfunction!(requests::read_views, m)?)?;
    m.add_function(wrap_pyfunction!(requests::splice, m)?)?;
    m.add_function(wrap_pyfunction!(requests::count_entries, m)?)?;
    Ok(())
}
