//! Writing `nhi.*` attributes into a request's own bytes: the record's bytes with the new
//! attributes inserted where the reader said (`RecordRead::insert_at`), or the whole record
//! replaced (one that was masked), and the length prefix of every record, scope entry and
//! resource entry that changed written anew. Everything else is copied as it came.
//!
//! For a request as OTLP SDKs and Collectors write it (fields in number order, lengths in their
//! shortest form) the result is byte for byte what parsing, appending and serializing gives.

use crate::schema::Schema;
use crate::wire::{length, varint, ReadError, Result};

/// Bytes to put in place of buf[from..to] (an insert when the two are equal); edits ascending,
/// each inside one record.
pub type Edit<'a> = (usize, usize, &'a [u8]);

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

struct Splicer<'a> {
    buf: &'a [u8],
    edits: &'a [Edit<'a>],
    next: usize,
    /// Field numbers of the containers, level by level: resource entries (1), scope entries,
    /// records.
    path: [u64; 3],
}

impl Splicer<'_> {
    /// Whether an edit starts before `end` (the next one not yet written).
    fn pending_before(&self, end: usize) -> bool {
        self.edits.get(self.next).is_some_and(|&(from, _, _)| from <= end)
    }

    /// The message at buf[start..end] of nesting `level` (0: the request), rebuilt into `out`.
    fn message(&mut self, start: usize, end: usize, level: usize, out: &mut Vec<u8>) -> Result<()> {
        if level == 3 {
            return self.record(start, end, out);
        }
        let mut pos = start;
        while pos < end {
            let tag_at = pos;
            let (tag, next) = varint(self.buf, pos, end)?;
            if tag != (self.path[level] << 3 | 2) {
                pos = crate::wire::skip(self.buf, next, end, tag, 0)?;
                out.extend_from_slice(&self.buf[tag_at..pos]);
                continue;
            }
            let (s, e) = length(self.buf, next, end)?;
            pos = e;
            if !self.pending_before(e) {
                out.extend_from_slice(&self.buf[tag_at..e]);
                continue;
            }
            let mut inner = Vec::with_capacity(e - s + 256);
            self.message(s, e, level + 1, &mut inner)?;
            out.extend_from_slice(&self.buf[tag_at..next]);
            put_varint(out, inner.len() as u64);
            out.extend_from_slice(&inner);
        }
        Ok(())
    }

    fn record(&mut self, start: usize, end: usize, out: &mut Vec<u8>) -> Result<()> {
        let mut copied = start;
        while let Some(&(from, to, bytes)) = self.edits.get(self.next) {
            if from > end {
                break;
            }
            if from < copied || to < from || to > end {
                return Err(ReadError::Malformed("splice edits out of order or across records"));
            }
            out.extend_from_slice(&self.buf[copied..from]);
            out.extend_from_slice(bytes);
            copied = to;
            self.next += 1;
        }
        out.extend_from_slice(&self.buf[copied..end]);
        Ok(())
    }
}

/// The request with `edits` written into its records. An edit outside every record, across two,
/// or out of order is an error: nothing is written where the reader did not point.
pub fn splice(buf: &[u8], schema: &Schema, edits: &[Edit<'_>]) -> Result<Vec<u8>> {
    let grown: usize = edits.iter().map(|(_, _, b)| b.len() + 12).sum();
    let mut out = Vec::with_capacity(buf.len() + grown);
    let mut splicer = Splicer { buf, edits, next: 0, path: [1, schema.scopes_field, schema.records_field] };
    splicer.message(0, buf.len(), 0, &mut out)?;
    if splicer.next != edits.len() {
        return Err(ReadError::Malformed("a splice edit outside every record"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Layout;

    fn schema() -> Schema {
        let layout = Layout {
            entry: 0,
            scope: 0,
            record: Some(0),
            scopes_field: 2,
            records_field: Some(2),
            attributes_field: Some(9),
            anyvalue: 0,
            body_field: 0,
        };
        Schema::new(&[vec![]], layout).expect("schema")
    }

    #[test]
    fn lengths_grow_at_every_level() {
        // request { entry { scope { span { name "a" } } } }
        let request = [0x0A, 0x07, 0x12, 0x05, 0x12, 0x03, 0x2A, 0x01, b'a'];
        let out = splice(&request, &schema(), &[(9, 9, &[0x4A, 0x00])]).expect("spliced");
        assert_eq!(out, [0x0A, 0x09, 0x12, 0x07, 0x12, 0x05, 0x2A, 0x01, b'a', 0x4A, 0x00]);
    }

    #[test]
    fn an_offset_outside_the_records_is_refused() {
        let request = [0x0A, 0x07, 0x12, 0x05, 0x12, 0x03, 0x2A, 0x01, b'a'];
        assert!(splice(&request, &schema(), &[(1, 1, &[0x4A, 0x00])]).is_err());
        assert_eq!(splice(&request, &schema(), &[]).expect("unchanged"), request);
        assert!(splice(&request, &schema(), &[(8, 10, &[])]).is_err(), "past the record's end");
    }

    #[test]
    fn a_record_replaced_whole() {
        let request = [0x0A, 0x07, 0x12, 0x05, 0x12, 0x03, 0x2A, 0x01, b'a'];
        let out = splice(&request, &schema(), &[(6, 9, &[0x2A, 0x00])]).expect("spliced");
        assert_eq!(out, [0x0A, 0x06, 0x12, 0x04, 0x12, 0x02, 0x2A, 0x00]);
    }
}
