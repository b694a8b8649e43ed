//! Reading an OTLP export request off its wire bytes, once.
//!
//! Iterating a record's attributes through the protobuf runtime makes an object for every
//! KeyValue, wanted or not. This walks the serialized request instead and, in the same pass:
//!
//! - finds the wanted attributes of every record (`KeyTable`);
//! - decides which records and which resource entries need masking: every KeyValue key at any
//!   depth goes through the key classifier (`KeyJudge`), every string field and AnyValue string
//!   or bytes at any depth through the triggers;
//! - notes fields the schema does not know (unknown numbers, unexpected wire types, groups),
//!   which the batch path then discards: what cannot be read cannot be checked for credentials.
//!
//! A record whose KeyValue carries its value twice (protobuf would merge the two) is
//! `ReadError::ReadAsPython`: the caller reads that request with the protobuf runtime instead.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::schema::{Kind, Schema};
use crate::triggers::Triggers;
use crate::wire::{fnv, length, skip, varint, ReadError, Result, MAX_DEPTH};

pub const F_DIRTY: u8 = 1;
pub const F_UNKNOWN: u8 = 2;
/// Something to mask in a record outside its own attributes.
pub const F_ELSEWHERE: u8 = 4;
/// A log record whose body is a map, or text that starts like a JSON object.
pub const F_OBJECT_BODY: u8 = 8;
/// A captured message field (a body, a status) occurs twice: protobuf merges the two, so the
/// record is read through it.
pub const F_MERGED: u8 = 16;

/// What to do with an attribute key (the values of `pipeline.attributes.key_actions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Decode = 1,
    /// Decode it, and note that the record carries a credential.
    Credential = 2,
    /// A forged copy of an attribute this processor writes: noted, never decoded.
    Ours = 3,
}

impl Action {
    pub fn from_code(code: u8) -> Option<Action> {
        match code {
            1 => Some(Action::Decode),
            2 => Some(Action::Credential),
            3 => Some(Action::Ours),
            _ => None,
        }
    }
}

/// FNV for tables whose keys are fixed at start-up (never grown by what a sender writes, so a
/// crafted collision can cost at most a probe through this small table).
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv(bytes);
    }
}

/// The wanted keys and what to do with each.
#[derive(Debug, Clone, Default)]
pub struct KeyTable(HashMap<Vec<u8>, Action, BuildHasherDefault<Fnv>>);

impl KeyTable {
    pub fn new(entries: impl IntoIterator<Item = (Vec<u8>, Action)>) -> KeyTable {
        KeyTable(entries.into_iter().collect())
    }

    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<Action> {
        self.0.get(key).copied()
    }
}

/// Whether a KeyValue key names a credential (`outputs.redact.Redactor.key_action`).
pub trait KeyJudge {
    fn holds_credential(&mut self, key: &[u8]) -> Result<bool>;
}

/// A wanted attribute: where its key and its value (None: the KeyValue has no value) are in the
/// request's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub key: (usize, usize),
    pub value: Option<(usize, usize)>,
}

/// One record as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordRead {
    /// In the order met: a later duplicate key wins, as in `read_attributes`.
    pub wanted: Vec<Wanted>,
    /// 1: a credential key; 2: a forged `nhi.*` key.
    pub special: u8,
    pub flags: u8,
    /// Indices of the record's own attributes that hold something to mask.
    pub dirty: Option<Vec<u32>>,
    /// Where the body's length prefix is when the body is a map (and not repeated).
    pub body_at: Option<usize>,
    /// Where `nhi.*` attributes are spliced in: after the record's last attribute, or where its
    /// attributes would be (before the first field numbered after them).
    pub insert_at: usize,
    /// The captured fields (`Captures`), in the order they were configured.
    pub captured: Vec<Captured>,
    /// Where the record's bytes are in the request.
    pub range: (usize, usize),
}

/// A record field read for a host that does not parse the request (`Captures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// An int32 or enum varint (span kind).
    Int32,
    /// A fixed64 (times).
    Fixed64,
    /// Where a string, bytes or message field's bytes are (name, ids, a log record's body).
    Range,
    /// An int32 varint field of a sub-message (the status' code).
    Int32In(u64),
}

/// A captured value; fields that are absent keep their protobuf default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captured {
    Int(i64),
    Fixed(u64),
    Range(usize, usize),
    Absent,
}

/// Which fields of a record to capture, by field number.
#[derive(Debug, Clone)]
pub struct Captures {
    slots: Vec<Option<(usize, Capture)>>,
    count: usize,
}

impl Captures {
    pub fn new(fields: &[(u64, Capture)]) -> Captures {
        let mut slots = vec![None; crate::schema::MAX_FIELD];
        for (i, &(number, capture)) in fields.iter().enumerate() {
            if let Some(slot) = slots.get_mut(number as usize) {
                *slot = Some((i, capture));
            }
        }
        Captures { slots, count: fields.len() }
    }

    #[inline]
    fn get(&self, number: u64) -> Option<(usize, Capture)> {
        self.slots.get(number as usize).copied().flatten()
    }
}

/// Last-set-wins int32 varint field `number` in the message at buf[start..end] (protobuf's merge
/// of a singular scalar), or None when the message does not set it.
fn int32_in(buf: &[u8], mut pos: usize, end: usize, number: u64) -> Result<Option<i64>> {
    let mut found = None;
    while pos < end {
        let (tag, next) = varint(buf, pos, end)?;
        pos = next;
        if tag == number << 3 {
            let (n, next) = varint(buf, pos, end)?;
            found = Some(i64::from(n as u32 as i32));
            pos = next;
        } else {
            pos = skip(buf, pos, end, tag, 0)?;
        }
    }
    Ok(found)
}

/// What a request holds, for masking and reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestRead {
    pub records: Vec<RecordRead>,
    /// Resource entries whose own parts (resource, scopes, schema urls) need masking.
    pub dirty_entries: Vec<u32>,
    pub unknown: bool,
    /// Per resource entry: its resource's wanted attributes and how many records it holds
    /// (only with `Extras::resource`).
    pub entries: Vec<(Vec<Wanted>, usize)>,
}

/// What a host that does not parse the request also needs read (`Reader::extras`).
#[derive(Debug, Clone)]
pub struct Extras<'t> {
    pub captures: Captures,
    /// The wanted keys of resource attributes.
    pub resource: &'t KeyTable,
}

/// One walk over one request's bytes.
pub struct Reader<'a, J: KeyJudge + ?Sized> {
    pub buf: &'a [u8],
    pub schema: &'a Schema,
    pub triggers: &'a Triggers,
    pub judge: &'a mut J,
    pub extras: Option<&'a Extras<'a>>,
    /// The deepest message nesting met (the protobuf runtime refuses past its own limit).
    pub deepest: u32,
    /// Check every string field and key is UTF-8, as the protobuf runtime does on parse (for a
    /// host that forwards the bytes without parsing them).
    pub check_utf8: bool,
}

const BODY_MAP: u8 = 1;
const BODY_JSON: u8 = 2;

impl<'a, J: KeyJudge + ?Sized> Reader<'a, J> {
    pub fn new(buf: &'a [u8], schema: &'a Schema, triggers: &'a Triggers, judge: &'a mut J) -> Self {
        Reader { buf, schema, triggers, judge, extras: None, deepest: 0, check_utf8: false }
    }

    /// Checks one field of a message of type `t` (its tag just read, the value at `*pos`);
    /// returns flags.
    fn field(&mut self, pos: &mut usize, end: usize, t: usize, tag: u64, depth: u32) -> Result<u8> {
        let (number, wire_type) = (tag >> 3, tag & 7);
        if number == 0 {
            return Err(ReadError::Malformed("field number 0"));
        }
        let kind = self.schema.kind(t, number, wire_type);
        if kind == Kind::Unknown || wire_type != 2 {
            *pos = skip(self.buf, *pos, end, tag, depth)?;
            return Ok(if kind == Kind::Unknown { F_UNKNOWN } else { 0 });
        }
        let (start, field_end) = length(self.buf, *pos, end)?;
        *pos = field_end;
        let bytes = &self.buf[start..field_end];
        if self.check_utf8 && matches!(kind, Kind::Text | Kind::Key) && std::str::from_utf8(bytes).is_err() {
            return Err(ReadError::Malformed("a string field that is not UTF-8"));
        }
        Ok(match kind {
            Kind::Text | Kind::Bytes => dirty_if(self.triggers.suspicious(bytes)),
            Kind::Message => self.walk(start, field_end, self.schema.child(t, number), depth + 1)?,
            Kind::Key => dirty_if(self.judge.holds_credential(bytes)?),
            _ => 0,
        })
    }

    /// Flags of a whole message of type `t` and everything below it.
    fn walk(&mut self, mut pos: usize, end: usize, t: usize, depth: u32) -> Result<u8> {
        if depth > MAX_DEPTH {
            return Err(ReadError::Malformed("message nested too deeply"));
        }
        self.deepest = self.deepest.max(depth);
        let mut flags = 0;
        while pos < end {
            let (tag, next) = varint(self.buf, pos, end)?;
            pos = next;
            flags |= self.field(&mut pos, end, t, tag, depth)?;
        }
        Ok(flags)
    }

    /// A record: its wanted attributes, what is special about it, its flags, its attributes to
    /// mask and where its map body is.
    pub fn record(&mut self, mut pos: usize, end: usize, t: usize, table: &KeyTable, depth: u32) -> Result<RecordRead> {
        let schema = self.schema;
        let want = schema.attributes_field;
        let kv_type = schema.child(t, want);
        let captures = self.extras.map(|e| &e.captures);
        let mut read = RecordRead { insert_at: end, range: (pos, end), ..RecordRead::default() };
        if let Some(c) = captures {
            read.captured = vec![Captured::Absent; c.count];
        }
        let mut index: i64 = -1;
        let mut bodies = 0;
        let mut insert_found = false;
        while pos < end {
            let tag_at = pos;
            let (tag, next) = varint(self.buf, pos, end)?;
            pos = next;
            if tag >> 3 != want || tag & 7 != 2 {
                if !insert_found && tag >> 3 > want {
                    read.insert_at = tag_at;
                    insert_found = true;
                }
                if let Some((slot, capture)) = captures.and_then(|c| c.get(tag >> 3)) {
                    self.capture(&mut read, slot, capture, tag, pos, end)?;
                }
                if tag >> 3 == schema.body_field && tag & 7 == 2 {
                    bodies += 1;
                    let body = object_body(self.buf, pos, end)?;
                    if body != 0 {
                        read.flags |= F_OBJECT_BODY;
                    }
                    read.body_at = (body == BODY_MAP && bodies == 1).then_some(pos);
                }
                let mut other = self.field(&mut pos, end, t, tag, depth)?;
                if other & F_DIRTY != 0 {
                    other |= F_ELSEWHERE;
                }
                read.flags |= other;
                continue;
            }
            let (mut p, kv_end) = length(self.buf, pos, end)?;
            pos = kv_end;
            read.insert_at = kv_end;
            insert_found = true;
            index += 1;
            let mut key: Option<(usize, usize)> = None;
            let mut value: Option<(usize, usize)> = None;
            let mut values = 0;
            let mut kv_flags = 0;
            while p < kv_end {
                // KeyValue: key = 1, value = 2, anything else checked by the schema
                let (inner, next) = varint(self.buf, p, kv_end)?;
                p = next;
                match inner {
                    0x0A => {
                        let (s, e) = length(self.buf, p, kv_end)?;
                        key = Some((s, e));
                        p = e;
                    }
                    0x12 => {
                        let (s, e) = length(self.buf, p, kv_end)?;
                        p = e;
                        values += 1;
                        value = Some((s, e));
                        kv_flags |= self.walk(s, e, schema.anyvalue, depth + 2)?;
                    }
                    _ => kv_flags |= self.field(&mut p, kv_end, kv_type, inner, depth + 1)?,
                }
            }
            if values > 1 {
                return Err(ReadError::ReadAsPython("a KeyValue with two values (protobuf merges them)"));
            }
            if let Some((s, e)) = key {
                if self.judge.holds_credential(&self.buf[s..e])? {
                    kv_flags |= F_DIRTY;
                }
            }
            if kv_flags & F_DIRTY != 0 {
                read.dirty.get_or_insert_with(Vec::new).push(index as u32);
            }
            read.flags |= kv_flags;
            let Some((s, e)) = key else { continue };
            match table.get(&self.buf[s..e]) {
                None => {}
                Some(Action::Ours) => read.special |= 2,
                Some(action) => {
                    if action == Action::Credential {
                        read.special |= 1;
                    }
                    read.wanted.push(Wanted { key: (s, e), value });
                }
            }
        }
        Ok(read)
    }

    /// Notes a captured field of a record (its tag just read, its value at `pos`).
    fn capture(
        &self,
        read: &mut RecordRead,
        slot: usize,
        capture: Capture,
        tag: u64,
        pos: usize,
        end: usize,
    ) -> Result<()> {
        let buf = self.buf;
        let value = match (capture, tag & 7) {
            (Capture::Int32, 0) => Captured::Int(i64::from(varint(buf, pos, end)?.0 as u32 as i32)),
            (Capture::Fixed64, 1) if pos + 8 <= end => {
                Captured::Fixed(u64::from_le_bytes(buf[pos..pos + 8].try_into().expect("eight bytes")))
            }
            (Capture::Range, 2) => {
                let (s, e) = length(buf, pos, end)?;
                Captured::Range(s, e)
            }
            (Capture::Int32In(number), 2) => {
                let (s, e) = length(buf, pos, end)?;
                match int32_in(buf, s, e, number)? {
                    Some(n) => Captured::Int(n),
                    None => Captured::Int(0),
                }
            }
            _ => return Ok(()), // another wire type: protobuf keeps it as unknown (flagged by `field`)
        };
        let merged = matches!(capture, Capture::Int32In(_)) || (capture == Capture::Range && self.is_message(tag));
        if merged && read.captured[slot] != Captured::Absent {
            read.flags |= F_MERGED;
        }
        read.captured[slot] = value;
        Ok(())
    }

    fn is_message(&self, tag: u64) -> bool {
        self.schema.record.is_some_and(|t| self.schema.kind(t, tag >> 3, tag & 7) == Kind::Message)
    }

    /// The wanted attributes of a resource (Resource { attributes = 1 }), in order.
    fn resource_wanted(&self, mut pos: usize, end: usize, table: &KeyTable, out: &mut Vec<Wanted>) -> Result<()> {
        let buf = self.buf;
        while pos < end {
            let (tag, next) = varint(buf, pos, end)?;
            pos = next;
            if tag != 0x0A {
                pos = skip(buf, pos, end, tag, 2)?;
                continue;
            }
            let (p, kv_end) = length(buf, pos, end)?;
            pos = kv_end;
            let (key, value) = key_value(buf, p, kv_end, 3)?;
            if let Some((s, e)) = key {
                if matches!(table.get(&buf[s..e]), Some(Action::Decode | Action::Credential)) {
                    out.push(Wanted { key: (s, e), value });
                }
            }
        }
        Ok(())
    }

    /// The request's resource entries (field 1), each given to `each` with its index and bounds;
    /// any other top-level field is walked (and found unknown). Whether one was unknown.
    fn entries(&mut self, mut each: impl FnMut(&mut Self, u32, usize, usize) -> Result<()>) -> Result<bool> {
        let end = self.buf.len();
        let mut unknown = false;
        let mut pos = 0;
        let mut entry = 0;
        while pos < end {
            let (tag, next) = varint(self.buf, pos, end)?;
            pos = next;
            if tag != 0x0A {
                unknown |= self.field(&mut pos, end, 0, tag, 0)? & F_UNKNOWN != 0;
                continue;
            }
            let (start, r_end) = length(self.buf, pos, end)?;
            pos = r_end;
            each(self, entry, start, r_end)?;
            entry += 1;
        }
        Ok(unknown)
    }

    /// Every record in request order; the resource entries whose own parts need masking; and
    /// whether any field is unknown. Traces and logs nest alike: request.resource_* (field 1)
    /// -> scope_* -> spans or log_records.
    pub fn request(&mut self, table: &KeyTable) -> Result<RequestRead> {
        let schema = self.schema;
        let Some(record_type) = schema.record else {
            return Err(ReadError::Malformed("this schema's requests hold no records"));
        };
        let mut out = RequestRead::default();
        let unknown = self.entries(|reader, entry, mut p, r_end| {
            let mut outer = 0;
            let mut resource = Vec::new();
            let records_before = out.records.len();
            while p < r_end {
                // one resource_*
                let (tag, next) = varint(reader.buf, p, r_end)?;
                p = next;
                if tag >> 3 != schema.scopes_field || tag & 7 != 2 {
                    if let (Some(extras), 0x0A) = (reader.extras, tag) {
                        let (s, e) = length(reader.buf, p, r_end)?;
                        reader.resource_wanted(s, e, extras.resource, &mut resource)?;
                    }
                    outer |= reader.field(&mut p, r_end, schema.entry, tag, 1)?;
                    continue;
                }
                let (mut q, s_end) = length(reader.buf, p, r_end)?;
                p = s_end;
                while q < s_end {
                    // one scope_*
                    let (tag, next) = varint(reader.buf, q, s_end)?;
                    q = next;
                    if tag >> 3 != schema.records_field || tag & 7 != 2 {
                        outer |= reader.field(&mut q, s_end, schema.scope, tag, 2)?;
                        continue;
                    }
                    let (start, record_end) = length(reader.buf, q, s_end)?;
                    q = record_end;
                    let read = reader.record(start, record_end, record_type, table, 3)?;
                    out.unknown |= read.flags & F_UNKNOWN != 0;
                    out.records.push(read);
                }
            }
            if outer & F_DIRTY != 0 {
                out.dirty_entries.push(entry);
            }
            out.unknown |= outer & F_UNKNOWN != 0;
            if reader.extras.is_some() {
                out.entries.push((resource, out.records.len() - records_before));
            }
            Ok(())
        })?;
        out.unknown |= unknown;
        Ok(out)
    }

    /// For requests read whole by Python (metrics): the resource entries with anything to mask
    /// anywhere below them, and whether any field is unknown.
    pub fn scan(&mut self) -> Result<(Vec<u32>, bool)> {
        let mut dirty = Vec::new();
        let mut below = false;
        let unknown = self.entries(|reader, entry, start, end| {
            let flags = reader.walk(start, end, reader.schema.entry, 1)?;
            if flags & F_DIRTY != 0 {
                dirty.push(entry);
            }
            below |= flags & F_UNKNOWN != 0;
            Ok(())
        })?;
        Ok((dirty, unknown || below))
    }
}

#[inline]
fn dirty_if(yes: bool) -> u8 {
    if yes {
        F_DIRTY
    } else {
        0
    }
}

/// Calls `f` with where each `values = 1` entry of a repeated message (ArrayValue, KeyValueList)
/// is; other fields are skipped.
fn each_value(
    buf: &[u8],
    mut pos: usize,
    end: usize,
    depth: u32,
    mut f: impl FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    while pos < end {
        let (tag, next) = varint(buf, pos, end)?;
        pos = next;
        if tag == 0x0A {
            let (s, e) = length(buf, pos, end)?;
            f(s, e)?;
            pos = e;
        } else {
            pos = skip(buf, pos, end, tag, depth)?;
        }
    }
    Ok(())
}

/// Where a field's bytes are in the request: (start, end).
pub type Place = (usize, usize);

/// A KeyValue's key and value (where their bytes are), the last key winning; other fields are
/// skipped. A value given twice is `ReadAsPython`: protobuf would merge the two.
fn key_value(buf: &[u8], mut pos: usize, end: usize, depth: u32) -> Result<(Option<Place>, Option<Place>)> {
    let mut key = None;
    let mut value = None;
    while pos < end {
        let (tag, next) = varint(buf, pos, end)?;
        pos = next;
        match tag {
            0x0A => {
                let (s, e) = length(buf, pos, end)?;
                key = Some((s, e));
                pos = e;
            }
            0x12 => {
                if value.is_some() {
                    return Err(ReadError::ReadAsPython("a KeyValue with two values (protobuf merges them)"));
                }
                let (s, e) = length(buf, pos, end)?;
                value = Some((s, e));
                pos = e;
            }
            _ => pos = skip(buf, pos, end, tag, depth)?,
        }
    }
    Ok((key, value))
}

/// What the AnyValue body whose length prefix is at `pos` holds, when it looks like a vendor
/// record: BODY_MAP (kvlist_value), BODY_JSON (a string whose first non-blank byte is '{'), else
/// 0. The last value field decides, as it does for protobuf (a oneof keeps the last one set).
fn object_body(buf: &[u8], pos: usize, end: usize) -> Result<u8> {
    let (mut p, body_end) = length(buf, pos, end)?;
    let (mut text_start, mut text_end) = (0, 0);
    let mut last = 0;
    while p < body_end {
        let (tag, next) = varint(buf, p, body_end)?;
        p = next;
        match tag {
            0x0A => {
                (text_start, text_end) = length(buf, p, body_end)?;
                p = text_end;
                last = 1;
            }
            0x32 => {
                p = length(buf, p, body_end)?.1;
                last = 6;
            }
            _ => {
                if (1..=7).contains(&(tag >> 3)) {
                    last = tag >> 3;
                }
                p = skip(buf, p, body_end, tag, 0)?;
            }
        }
    }
    if last == 6 {
        return Ok(BODY_MAP);
    }
    if last != 1 {
        return Ok(0);
    }
    let text = &buf[text_start..text_end];
    Ok(match text.iter().find(|&&c| !(c == b' ' || (9..=13).contains(&c))) {
        Some(b'{') => BODY_JSON,
        _ => 0,
    })
}

/// Fields numbered `path[depth]` at `depth`, nested along `path`; stops counting past
/// `stop_after`; the count so far when the bytes cannot be walked (the protobuf runtime then
/// says what is wrong).
pub fn count_entries(buf: &[u8], path: &[u32], stop_after: u64) -> u64 {
    if path.is_empty() {
        return 0;
    }
    count_at(buf, 0, buf.len(), path, stop_after)
}

fn count_at(buf: &[u8], mut pos: usize, end: usize, path: &[u32], stop_after: u64) -> u64 {
    let mut found = 0u64;
    while pos < end {
        let Ok((tag, next)) = varint(buf, pos, end) else { return found };
        pos = next;
        match tag & 7 {
            0 => {
                let Ok((_, next)) = varint(buf, pos, end) else { return found };
                pos = next;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let Ok((n, start)) = varint(buf, pos, end) else { return found };
                if n > (end - start) as u64 {
                    return found;
                }
                let field_end = start + n as usize;
                if tag >> 3 == u64::from(path[0]) {
                    if path.len() == 1 {
                        found += 1;
                    } else {
                        found += count_at(buf, start, field_end, &path[1..], stop_after - found);
                    }
                    if found > stop_after {
                        return found;
                    }
                }
                pos = field_end;
            }
            _ => return found,
        }
    }
    found
}

/// An AnyValue as plain data, borrowed from the request's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Unset,
    Str(&'a [u8]),
    Bytes(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    List(Vec<Value<'a>>),
    /// Keys in the order met; a later duplicate wins when made a map.
    Map(Vec<(&'a [u8], Value<'a>)>),
}

/// A whole AnyValue (`anyvalue.to_python` without a protobuf object per value): what a vendor
/// record in a log body is read as. Unknown fields are skipped; of the oneof, the last value set
/// wins, as in protobuf. Bytes protobuf would merge (two `kvlist_value`s, a KeyValue with two
/// values) are `ReadAsPython`, so what is read is always what protobuf sees.
pub fn any_value(buf: &[u8], mut pos: usize, end: usize, depth: u32) -> Result<Value<'_>> {
    if depth > MAX_DEPTH {
        return Err(ReadError::Malformed("value nested too deeply"));
    }
    let mut out = Value::Unset;
    let mut member = 0u64; // the oneof member set last
    while pos < end {
        let (tag, next) = varint(buf, pos, end)?;
        pos = next;
        match tag {
            0x0A | 0x10 | 0x18 | 0x21 | 0x3A => member = tag,
            0x2A | 0x32 => {
                if tag == member {
                    return Err(ReadError::ReadAsPython("a repeated map or list in one value (protobuf merges them)"));
                }
                member = tag;
            }
            _ => {}
        }
        match tag {
            0x0A | 0x3A => {
                let (s, e) = length(buf, pos, end)?;
                out = if tag == 0x0A { Value::Str(&buf[s..e]) } else { Value::Bytes(&buf[s..e]) };
                pos = e;
            }
            0x10 => {
                let (n, next) = varint(buf, pos, end)?;
                out = Value::Bool(n != 0);
                pos = next;
            }
            0x18 => {
                let (n, next) = varint(buf, pos, end)?;
                out = Value::Int(n as i64); // int64: two's complement
                pos = next;
            }
            0x21 => {
                if pos + 8 > end {
                    return Err(ReadError::Malformed("double beyond its message"));
                }
                let raw: [u8; 8] = buf[pos..pos + 8].try_into().expect("eight bytes");
                out = Value::Double(f64::from_le_bytes(raw));
                pos += 8;
            }
            0x2A => {
                // ArrayValue { repeated AnyValue values = 1 }
                let (start, inner_end) = length(buf, pos, end)?;
                let mut items = Vec::new();
                each_value(buf, start, inner_end, depth + 1, |s, e| {
                    items.push(any_value(buf, s, e, depth + 1)?);
                    Ok(())
                })?;
                out = Value::List(items);
                pos = inner_end;
            }
            0x32 => {
                // KeyValueList { repeated KeyValue values = 1 }
                let (start, inner_end) = length(buf, pos, end)?;
                let mut pairs = Vec::new();
                each_value(buf, start, inner_end, depth + 1, |q, kv_end| {
                    let (key, value) = key_value(buf, q, kv_end, depth + 1)?;
                    let (key_start, key_end) = key.unwrap_or((q, q));
                    let v = match value {
                        Some((s, e)) => any_value(buf, s, e, depth + 1)?,
                        None => Value::Unset,
                    };
                    pairs.push((&buf[key_start..key_end], v));
                    Ok(())
                })?;
                out = Value::Map(pairs);
                pos = inner_end;
            }
            _ => pos = skip(buf, pos, end, tag, depth + 1)?,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_stops_past_the_cap_and_at_bad_bytes() {
        // request { resource_spans { scope_spans { spans {} spans {} } } }
        let request = [0x0A, 0x06, 0x12, 0x04, 0x12, 0x00, 0x12, 0x00];
        assert_eq!(count_entries(&request, &[1, 2, 2], 100), 2);
        assert_eq!(count_entries(&request, &[1, 2, 2], 0), 1);
        assert_eq!(count_entries(&request[..5], &[1, 2, 2], 100), 0);
    }

    #[test]
    fn a_map_value_repeated_is_read_by_protobuf() {
        let twice = [0x32, 0x00, 0x32, 0x00];
        assert!(matches!(any_value(&twice, 0, 4, 0), Err(ReadError::ReadAsPython(_))));
        let once = [0x32, 0x00];
        assert_eq!(any_value(&once, 0, 2, 0), Ok(Value::Map(vec![])));
    }
}
