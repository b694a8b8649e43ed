//! The native core of nhi-convergence (issue 27, second stage): the OTLP wire reader and
//! masking, in Rust, behind the API the Python batch path calls.
//!
//! - `wire`: varints, lengths and skipping any field, every position bounded;
//! - `triggers`: whether a string may hold a credential (one linear pass);
//! - `mask`: the secrets inside a string masked (the table's rules on the `regex` crate);
//! - `schema`: field kinds per message type, from the protobuf descriptors;
//! - `key_cache`: the key classifier's answers, bounded against what senders write;
//! - `read`: one walk over a request: wanted attributes, what needs masking, unknown fields;
//! - `python` (feature `python`): the module `otel_processor._native`.
//!
//! The reader works on plain bytes and returns plain data, so `cargo test` and the fuzz targets
//! (`fuzz/`) run it without an interpreter.

#![forbid(unsafe_code)]

pub mod key_cache;
pub mod mask;
pub mod read;
pub mod schema;
pub mod splice;
pub mod triggers;
pub mod wire;

#[cfg(feature = "python")]
mod python;
