//! Field kinds per message type of one OTLP export request, built from the protobuf descriptors
//! on the Python side (`pipeline.attributes.wire_schema`), so a field OTLP adds is covered by the
//! next build without a change here.

pub const MAX_TYPES: usize = 64;
/// Fields numbered past this are left unknown: discarded, never passed on unread.
pub const MAX_FIELD: usize = 32;

/// What a field is, for the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not in the schema, or of another wire type than the schema says.
    Unknown,
    Scalar,
    /// Length-delimited with nothing to check (trace and span ids).
    Skip,
    /// A string (or AnyValue bytes): checked for secrets.
    Text,
    /// A sub-message, walked with its own type.
    Message,
    /// KeyValue.key: classified.
    Key,
    /// AnyValue bytes: checked for secrets like a string, but not UTF-8.
    Bytes,
}

impl Kind {
    pub fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0 => Kind::Unknown,
            1 => Kind::Scalar,
            2 => Kind::Skip,
            3 => Kind::Text,
            4 => Kind::Message,
            5 => Kind::Key,
            6 => Kind::Bytes,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Field {
    kind: Kind,
    wire_type: u8,
    wire_type_alt: u8, // packed repeated scalars: 2
    child: u8,
}

const UNKNOWN_FIELD: Field = Field { kind: Kind::Unknown, wire_type: 255, wire_type_alt: 255, child: 0 };

/// Why a schema could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SchemaError {}

/// One field as the descriptors describe it: (number, kind code, wire type, packed wire type or
/// 255, child type index).
pub type FieldSpec = (u32, u8, u8, u8, u32);

/// Type 0 is the export request. `entry` (resource_*), `scope` (scope_*) and `record` (spans,
/// log_records) are type indices; a request without records (metrics) has no `record`.
#[derive(Debug, Clone)]
pub struct Schema {
    fields: Vec<[Field; MAX_FIELD]>,
    pub entry: usize,
    pub scope: usize,
    pub record: Option<usize>,
    pub scopes_field: u64,
    pub records_field: u64,
    pub attributes_field: u64,
    pub anyvalue: usize,
    /// The record's body (log records); 0 for spans.
    pub body_field: u64,
}

/// Where the request's parts are, by type index and field number.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub entry: usize,
    pub scope: usize,
    pub record: Option<usize>,
    pub scopes_field: u64,
    pub records_field: Option<u64>,
    pub attributes_field: Option<u64>,
    pub anyvalue: usize,
    pub body_field: u64,
}

impl Schema {
    pub fn new(types: &[Vec<FieldSpec>], layout: Layout) -> Result<Schema, SchemaError> {
        if types.len() > MAX_TYPES {
            return Err(SchemaError("too many message types for the wire schema".into()));
        }
        let within = |t: usize| t < types.len();
        if !within(layout.entry)
            || !within(layout.scope)
            || !within(layout.anyvalue)
            || !layout.record.is_none_or(within)
        {
            return Err(SchemaError("a type index beyond the schema's types".into()));
        }
        let mut fields = vec![[UNKNOWN_FIELD; MAX_FIELD]; types.len()];
        for (t, specs) in types.iter().enumerate() {
            for &(number, code, wire_type, wire_type_alt, child) in specs {
                let kind = Kind::from_code(code).ok_or_else(|| SchemaError(format!("field kind {code}")))?;
                if kind == Kind::Message && !within(child as usize) {
                    return Err(SchemaError(format!("field {number} of type {t} names type {child}")));
                }
                if (number as usize) < MAX_FIELD && number > 0 {
                    fields[t][number as usize] = Field { kind, wire_type, wire_type_alt, child: child as u8 };
                }
            }
        }
        Ok(Schema {
            fields,
            entry: layout.entry,
            scope: layout.scope,
            record: layout.record,
            scopes_field: layout.scopes_field,
            records_field: layout.records_field.unwrap_or(u64::MAX),
            attributes_field: layout.attributes_field.unwrap_or(u64::MAX),
            anyvalue: layout.anyvalue,
            body_field: layout.body_field,
        })
    }

    /// The kind of field `number` of type `t` arriving with `wire_type`: Unknown where the schema
    /// does not know it or expects another wire type (protobuf keeps such a field as unknown).
    #[inline]
    pub fn kind(&self, t: usize, number: u64, wire_type: u64) -> Kind {
        if number >= MAX_FIELD as u64 {
            return Kind::Unknown;
        }
        let f = &self.fields[t][number as usize];
        if f.kind != Kind::Unknown && wire_type != u64::from(f.wire_type) && wire_type != u64::from(f.wire_type_alt) {
            return Kind::Unknown;
        }
        f.kind
    }

    #[inline]
    pub fn child(&self, t: usize, number: u64) -> usize {
        if number >= MAX_FIELD as u64 {
            return 0;
        }
        usize::from(self.fields[t][number as usize].child)
    }
}
