//! The masking triggers, configured from the secrets table and asked from Python.

use std::sync::{Arc, LazyLock, RwLock};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::triggers::Triggers;

static TRIGGERS: LazyLock<RwLock<Arc<Triggers>>> = LazyLock::new(|| RwLock::new(Arc::new(Triggers::empty())));

pub(super) fn triggers() -> Arc<Triggers> {
    Arc::clone(&TRIGGERS.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

fn to_bytes_list(words: Vec<String>) -> Vec<Vec<u8>> {
    words.into_iter().map(String::into_bytes).collect()
}

/// Triggers from the four lists of `outputs.redact.trigger_words`.
pub(super) fn build_triggers(
    prefixes: Vec<String>,
    assignment_words: Vec<String>,
    whole_words: Vec<String>,
    space_words: Vec<String>,
) -> Triggers {
    Triggers::new(
        &to_bytes_list(prefixes),
        &to_bytes_list(assignment_words),
        &to_bytes_list(whole_words),
        &to_bytes_list(space_words),
    )
}

/// The triggers from the secrets table (`outputs.redact` passes the lists it builds its own
/// trigger from). Prefixes keep their case; words are compared lower case.
#[pyfunction]
pub(super) fn configure_triggers(
    prefixes: Vec<String>,
    assignment_words: Vec<String>,
    whole_words: Vec<String>,
    space_words: Vec<String>,
) {
    let built = build_triggers(prefixes, assignment_words, whole_words, space_words);
    *TRIGGERS.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(built);
}

/// The masking triggers on a str (as UTF-8) or bytes.
#[pyfunction]
pub(super) fn suspicious(data: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(text) = data.cast::<PyString>() {
        // surrogates (which UTF-8 cannot hold) are encoded as Python's "surrogatepass" does
        let encoded = text.call_method1("encode", ("utf-8", "surrogatepass"))?;
        return Ok(triggers().suspicious(encoded.cast::<PyBytes>()?.as_bytes()));
    }
    let raw: Vec<u8> = data.extract()?;
    Ok(triggers().suspicious(&raw))
}
