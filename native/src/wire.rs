//! The protobuf wire format, read by hand: varints, length prefixes and skipping any field
//! (groups included). Every position is checked against the end of the message it belongs
//! to, so no input reads past its buffer, and nesting is bounded.

use std::fmt;

/// The protobuf runtime's own recursion limit.
pub const MAX_DEPTH: u32 = 100;

/// Why a request could not be read by this reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The bytes are not a valid protobuf message.
    Malformed(&'static str),
    /// Valid bytes that the protobuf runtime would read differently from a plain walk (it merges
    /// a repeated message field, or a string is not UTF-8): the caller reads them through it.
    ReadAsPython(&'static str),
    /// The key classifier (a Python callable at the boundary) raised; the boundary holds why.
    Judge,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Malformed(why) | ReadError::ReadAsPython(why) => f.write_str(why),
            ReadError::Judge => f.write_str("the key classifier failed"),
        }
    }
}

impl std::error::Error for ReadError {}

pub type Result<T> = std::result::Result<T, ReadError>;

fn malformed<T>(why: &'static str) -> Result<T> {
    Err(ReadError::Malformed(why))
}

/// A varint at `pos`, read no further than `end`; returns it and the position after it.
#[inline(always)]
pub fn varint(buf: &[u8], mut pos: usize, end: usize) -> Result<(u64, usize)> {
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        if pos >= end {
            return malformed("truncated varint");
        }
        let b = buf[pos];
        pos += 1;
        result |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok((result, pos));
        }
        shift += 7;
        if shift >= 64 {
            return malformed("varint longer than 10 bytes");
        }
    }
}

/// A length prefix at `pos`: where the field's bytes start and end, the end checked against
/// `end`.
#[inline(always)]
pub fn length(buf: &[u8], pos: usize, end: usize) -> Result<(usize, usize)> {
    let (n, start) = varint(buf, pos, end)?;
    if n > (end - start) as u64 {
        return malformed("field beyond its message");
    }
    Ok((start, start + n as usize))
}

/// Past the value of a field with `tag`, whatever its wire type (groups included).
pub fn skip(buf: &[u8], mut pos: usize, end: usize, tag: u64, depth: u32) -> Result<usize> {
    match tag & 7 {
        0 => return Ok(varint(buf, pos, end)?.1),
        1 => pos += 8,
        2 => {
            let (n, start) = varint(buf, pos, end)?;
            if n > (end - start) as u64 {
                return malformed("length beyond the message");
            }
            pos = start + n as usize;
        }
        5 => pos += 4,
        3 => {
            // a group: fields up to the end-group tag of the same field number
            if depth >= MAX_DEPTH {
                return malformed("groups nested too deeply");
            }
            loop {
                if pos >= end {
                    return malformed("group without its end");
                }
                let (inner, next) = varint(buf, pos, end)?;
                pos = next;
                if inner & 7 == 4 {
                    if inner >> 3 != tag >> 3 {
                        return malformed("end of another group");
                    }
                    return Ok(pos);
                }
                if inner >> 3 == 0 {
                    return malformed("field number 0");
                }
                pos = skip(buf, pos, end, inner, depth + 1)?;
            }
        }
        _ => return malformed("wire type 4, 6 or 7 where a field starts"),
    }
    if pos > end {
        return malformed("field beyond the message");
    }
    Ok(pos)
}

/// FNV-1a, never 0 (0 marks an empty slot in the tables that use it).
#[inline]
pub fn fnv(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_their_limits() {
        assert_eq!(varint(&[0x96, 0x01], 0, 2), Ok((150, 2)));
        assert_eq!(varint(&[0x96], 0, 1), Err(ReadError::Malformed("truncated varint")));
        let long = [0xFFu8; 11];
        assert_eq!(varint(&long, 0, 11), Err(ReadError::Malformed("varint longer than 10 bytes")));
    }

    #[test]
    fn a_length_may_not_pass_its_message() {
        assert_eq!(length(&[3, 1, 2, 3], 0, 4), Ok((1, 4)));
        assert!(length(&[4, 1, 2, 3], 0, 4).is_err());
    }

    #[test]
    fn groups_are_skipped_whole_and_must_close() {
        // field 1 start-group, field 2 varint 5, field 1 end-group
        let group = [0x0B, 0x10, 0x05, 0x0C];
        assert_eq!(skip(&group, 1, 4, 0x0B, 0), Ok(4));
        let unclosed = [0x0B, 0x10, 0x05];
        assert!(skip(&unclosed, 1, 3, 0x0B, 0).is_err());
        let mut deep = vec![0x0Bu8; 200];
        deep.extend(vec![0x0Cu8; 200]);
        assert_eq!(skip(&deep, 1, deep.len(), 0x0B, 0), Err(ReadError::Malformed("groups nested too deeply")));
    }
}
