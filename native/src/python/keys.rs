//! Attribute keys: the wanted-key table and the credential-key classifier, asked by the reader
//! with the interpreter released where it can be.

use std::collections::HashMap;
use std::sync::RwLock;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::read_error;
use crate::key_cache::KeyCache;
use crate::read::{self, Action, KeyJudge};
use crate::wire::ReadError;

/// A key -> action table (1 decode, 2 credential, 3 ours).
#[pyclass(frozen, module = "otel_processor._native")]
pub(super) struct KeyTable(pub(super) read::KeyTable);

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
pub(super) struct KeyClassifier {
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
pub(super) struct PyJudge<'a, 'py> {
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
pub(super) const MAX_MISSES: usize = 256;

/// The classifier as the reader asks it with the interpreter released: remembered answers only;
/// a key not remembered is noted and answered "no", and the walk's result is then not used.
pub(super) struct CachedJudge<'a> {
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
pub(super) fn with_keys<T: Send>(
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
