//! Masking secrets inside strings, asked from Python: `outputs.redact.Redactor.text` calls
//! `Masker.mask` when the native core is built.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::triggers::build_triggers;
use crate::mask::{self, Accept, How};

/// The secrets table's rules, compiled; `fingerprint(secret)` gives a fingerprint's text and
/// `reference(text)` masks a string the way the reference core does, for the strings whose
/// answer this core leaves to it (`mask::Reference`) and strings UTF-8 cannot hold.
#[pyclass(frozen, module = "otel_processor._native")]
pub(super) struct Masker {
    inner: mask::Masker,
    fingerprint: Py<PyAny>,
    reference: Py<PyAny>,
}

#[pymethods]
impl Masker {
    /// `triggers`: the four word lists of `configure_triggers`; `rules`: (RE2 pattern, how: 1
    /// fingerprint or 2 hide, accept code) in order.
    #[new]
    #[allow(clippy::too_many_arguments)] // one argument per part of the table, as redact builds them
    fn new(
        triggers: (Vec<String>, Vec<String>, Vec<String>, Vec<String>),
        rules: Vec<(String, u8, u8)>,
        schemes: Vec<String>,
        mask_prefix: String,
        opaque: String,
        fingerprint: Py<PyAny>,
        reference: Py<PyAny>,
    ) -> PyResult<Masker> {
        let (prefixes, assignments, whole, space) = triggers;
        let triggers = build_triggers(prefixes, assignments, whole, space);
        let rules = rules
            .into_iter()
            .map(|(pattern, how, accept)| {
                let how = match how {
                    1 => How::Fingerprint,
                    2 => How::Hide,
                    _ => return Err(PyValueError::new_err(format!("mask kind {how} for {pattern:?}"))),
                };
                let accept =
                    Accept::from_code(accept).ok_or_else(|| PyValueError::new_err(format!("accept code {accept}")))?;
                Ok((pattern, how, accept))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let inner = mask::Masker::new(triggers, &rules, schemes, mask_prefix, opaque)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Masker { inner, fingerprint, reference })
    }

    /// `text` with its secrets masked; the same object when it holds none.
    fn mask<'py>(&self, text: Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
        let py = text.py();
        let Ok(utf8) = text.to_str() else {
            return self.reference.bind(py).call1((text,)); // lone surrogates
        };
        let mut failed: Option<PyErr> = None;
        let mut fingerprint = |secret: &str| -> String {
            match self.fingerprint.bind(py).call1((secret,)).and_then(|v| v.extract::<String>()) {
                Ok(done) => done,
                Err(err) => {
                    failed.get_or_insert(err);
                    String::new()
                }
            }
        };
        let masked = self.inner.mask(utf8, &mut fingerprint);
        if let Some(err) = failed {
            return Err(err);
        }
        match masked {
            Ok(None) => Ok(text.into_any()),
            Ok(Some(out)) => Ok(PyString::new(py, &out).into_any()),
            Err(mask::Reference) => self.reference.bind(py).call1((text,)),
        }
    }
}
