# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled twin of ``pipeline.attributes``: reads a request off its wire bytes, once.

Iterating a record's ``attributes`` through the protobuf runtime makes a Python object for every
KeyValue and every key, wanted or not; on 1 KB records that is a quarter of the processor's time.
This walks the serialized request instead and, in the same pass:

- decodes the wanted attributes of every record (``KeyTable``: a C hash filter, then a dict);
- decides which records and which resource entries need masking: every KeyValue key at any depth
  goes through the same classifier as ``outputs.redact`` (``KeyClassifier`` caches its answers by
  the key's exact bytes), and every string field and AnyValue string or bytes at any depth goes
  through ``_suspicious``, the C form of ``outputs.redact.TRIGGER``;
- notes fields the schema does not know (unknown field numbers, unexpected wire types, groups),
  which the batch path then discards: what cannot be read cannot be checked for credentials.

The schema comes from the protobuf descriptors (``attributes.wire_schema``), so a field OTLP adds
is covered by the next build. Every protobuf wire type is read or skipped, groups included.

Contract per record: (wanted attributes, special: 1 a credential key, 2 a forged ``nhi.*`` key, flags,
indices of the record's own attributes to mask or None, where a map body's length prefix is or -1)
with flags DIRTY (something to mask), ELSEWHERE (some of it outside the record's own attributes),
UNKNOWN and OBJECT_BODY (a body a vendor profile may read); a later duplicate key
wins, as in ``read_attributes``. A record whose KeyValue carries its value twice (protobuf would merge the
two) raises ``ReadAsPython``: the caller reads that request with the protobuf runtime instead.
tests/test_wire.py checks that both readers and both trigger implementations agree.
"""

from cpython.unicode cimport PyUnicode_GET_LENGTH
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy


cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from ..anyvalue import to_python

cdef enum:
    SLOTS = 1024          # open-addressing table of wanted-key hashes; wanted keys number ~60
    MAX_TYPES = 64
    MAX_FIELD = 32
    MAX_DEPTH = 100       # the protobuf runtime's own recursion limit
    K_UNKNOWN = 0         # field kinds in a Schema
    K_SCALAR = 1
    K_SKIP = 2            # length-delimited, nothing to check (trace and span ids)
    K_TEXT = 3            # a string (or AnyValue bytes) to check for secrets
    K_MSG = 4             # a sub-message, walked with its own type
    K_KEY = 5             # KeyValue.key: classified
    F_DIRTY = 1
    F_UNKNOWN = 2
    F_ELSEWHERE = 4       # something to mask in a record outside its own attributes
    F_OBJECT_BODY = 8     # a log record whose body is a map, or text that starts like a JSON object
    BODY_MAP = 1          # what _object_body found
    BODY_JSON = 2
    KEY_SLOTS = 8192
    NAME_SLOTS = 1024     # map keys of vendor bodies decoded once (``_name``)
    MAX_NAME = 64
    KEY_ARENA = 262144
    MAX_KEY_CACHED = 512


class ReadAsPython(ValueError):
    """The request is valid but this reader would not read it exactly as protobuf does."""


cdef inline uint64_t _fnv(const unsigned char* s, Py_ssize_t n) noexcept:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ s[i]) * 1099511628211ULL
    return h | 1  # never 0: 0 marks an empty slot


cdef inline Py_ssize_t _varint(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end,
                               uint64_t* out) except -1:
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef unsigned char b
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            out[0] = result
            return pos
        shift += 7
        if shift >= 64:
            raise ValueError("varint longer than 10 bytes")


cdef Py_ssize_t _skip(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end, uint64_t tag,
                      int depth) except -1:
    """Past the value of a field with ``tag``, whatever its wire type (groups included)."""
    cdef uint64_t n, wire_type = tag & 7, inner
    if wire_type == 0:
        return _varint(buf, pos, end, &n)
    if wire_type == 1:
        pos += 8
    elif wire_type == 2:
        pos = _varint(buf, pos, end, &n)
        if n > <uint64_t>(end - pos):
            raise ValueError("length beyond the message")
        pos += <Py_ssize_t>n
    elif wire_type == 5:
        pos += 4
    elif wire_type == 3:  # a group: fields up to the end-group tag of the same field number
        if depth >= MAX_DEPTH:
            raise ValueError("groups nested too deeply")
        while True:
            if pos >= end:
                raise ValueError("group without its end")
            pos = _varint(buf, pos, end, &inner)
            if (inner & 7) == 4:
                if (inner >> 3) != (tag >> 3):
                    raise ValueError("end of another group")
                return pos
            if (inner >> 3) == 0:
                raise ValueError("field number 0")
            pos = _skip(buf, pos, end, inner, depth + 1)
    else:
        raise ValueError(f"wire type {wire_type} where a field starts")
    if pos > end:
        raise ValueError("field beyond the message")
    return pos


cdef inline Py_ssize_t _length(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end,
                               Py_ssize_t* field_end) except -1:
    """Reads a length prefix; sets where the field ends, checked against ``end``."""
    cdef uint64_t n
    pos = _varint(buf, pos, end, &n)
    if n > <uint64_t>(end - pos):
        raise ValueError("field beyond its message")
    field_end[0] = pos + <Py_ssize_t>n
    return pos


# -- the triggers of outputs.redact.TRIGGER, on bytes ---------------------------------------------
cdef inline bint _is_word(unsigned char c) noexcept:
    return (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) or c == 95


cdef inline bint _at(const unsigned char* s, Py_ssize_t n, Py_ssize_t i, const char* word,
                     Py_ssize_t length) noexcept:
    return i + length <= n and memcmp(s + i, word, length) == 0


cdef inline bint _ends_with(const unsigned char* s, Py_ssize_t k, const char* word, Py_ssize_t length) noexcept:
    """Whether s[:k] ends with ``word`` (lower case), ignoring ASCII case."""
    cdef Py_ssize_t j
    cdef unsigned char c
    if k < length:
        return False
    for j in range(length):
        c = s[k - length + j]
        if c >= 65 and c <= 90:
            c += 32
        if c != <unsigned char>word[j]:
            return False
    return True


cdef bint _code_value(const unsigned char* s, Py_ssize_t n, Py_ssize_t i) noexcept:
    """After the '=' or ':' that follows ``code``: up to two spaces, a quote or none, then eight
    characters (UTF-8 lead bytes) that may be part of an authorization code; ``"code": 200``
    has three."""
    cdef Py_ssize_t skipped = 0, chars = 0
    cdef unsigned char c
    while skipped < 2 and i < n and s[i] == 32:
        i += 1
        skipped += 1
    if i < n and (s[i] == 34 or s[i] == 39):
        i += 1
    while i < n and chars < 8:
        c = s[i]
        if (c == 32 or c == 9 or c == 10 or c == 12 or c == 13 or c == 34 or c == 39 or c == 38 or c == 44
                or c == 59 or c == 123 or c == 125 or c == 91 or c == 93):
            return False
        if (c & 0xC0) != 0x80:
            chars += 1
        i += 1
    return chars == 8


# -- the words and prefixes of rules/secrets.yaml, as C tables -------------------------------------
# Configured once at import from the table outputs.redact reads (``configure_triggers``), so that
# the C triggers and the Python ones are built from one list. Words are grouped by one byte: a
# prefix by its first (case as written), a word by its last (lower case).
cdef enum:
    G_PREFIX = 0        # token formats: at the start of a word (or at a '-')
    G_ASSIGN = 1        # assignment words: before '=' or ':'
    G_SPACE = 2         # scheme words, flags, SQL: before ' ' or '\t'
    MAX_WORDS = 512
    MAX_WORD_BYTES = 16384
    MAX_GAP = 8         # spaces or tabs between a word (and its quotes) and its '=' or ':'

cdef unsigned char _word_bytes[MAX_WORD_BYTES]
cdef int _word_offset[3][MAX_WORDS]
cdef int _word_length[3][MAX_WORDS]
cdef bint _word_whole[3][MAX_WORDS]    # G_ASSIGN: only with a value that may be a code after it
cdef int _index_start[3][257]


cdef inline bint _ends_with_word(const unsigned char* s, Py_ssize_t k, int group, int w) noexcept:
    return _ends_with(s, k, <const char*>&_word_bytes[_word_offset[group][w]], _word_length[group][w])


cdef bint _assigned(const unsigned char* s, Py_ssize_t n, Py_ssize_t i, Py_ssize_t value_at) noexcept:
    """At an '=' or ':' at i (or its URL encoding, the value then at ``value_at``): an assignment
    word, up to two quotes, up to MAX_GAP spaces or tabs, before it (a whole-word one only with a
    value that may be a code after it)."""
    cdef Py_ssize_t k = i, skipped = 0
    cdef unsigned char last
    cdef int w
    while skipped < MAX_GAP and k > 0 and (s[k - 1] == 32 or s[k - 1] == 9):
        k -= 1
        skipped += 1
    skipped = 0
    while skipped < 2 and k > 0:  # a quote: ' or ", backslash-escaped or not, or \u0022 / \u0027
        if s[k - 1] == 34 or s[k - 1] == 39:
            k -= 1
            if k > 0 and s[k - 1] == 92:
                k -= 1
        elif k >= 6 and (_at(s, n, k - 6, "\\u0022", 6) or _at(s, n, k - 6, "\\u0027", 6)):
            k -= 6
        else:
            break
        skipped += 1
    if k == 0:
        return False
    last = s[k - 1]
    if last >= 65 and last <= 90:
        last += 32
    for w in range(_index_start[G_ASSIGN][last], _index_start[G_ASSIGN][last + 1]):
        if _ends_with_word(s, k, G_ASSIGN, w) and (not _word_whole[G_ASSIGN][w] or _code_value(s, n, value_at)):
            return True
    return False


cdef bint _spaced(const unsigned char* s, Py_ssize_t c_at) noexcept:
    """At a ' ' or '\t' at c_at: a scheme word, a command-line flag or SQL ends before it."""
    cdef unsigned char last
    cdef int w
    if c_at == 0:
        return False
    last = s[c_at - 1]
    if last >= 65 and last <= 90:
        last += 32
    for w in range(_index_start[G_SPACE][last], _index_start[G_SPACE][last + 1]):
        if _ends_with_word(s, c_at, G_SPACE, w):
            return True
    return False


def configure_triggers(prefixes, assignment_words, whole_words, space_words):
    """The C triggers from the secrets table (``outputs.redact`` passes the lists it builds its
    own triggers from). Prefixes keep their case; words are lower case."""
    cdef int group, used = 0, w, b
    cdef bytes raw
    groups = ([p.encode() for p in prefixes], [a.lower().encode() for a in assignment_words],
              [w_.lower().encode() for w_ in space_words])
    whole = {w_.lower().encode() for w_ in whole_words}
    for group in range(3):
        words = groups[group]
        if len(words) > MAX_WORDS:
            raise ValueError("more words than the C tables hold")
        # (wraparound is off in this module: the last byte is x[len(x) - 1], never x[-1])
        keyed = sorted(words, key=lambda x: (x[0] if group == G_PREFIX else x[len(x) - 1]))
        for b in range(257):
            _index_start[group][b] = 0
        for w, raw in enumerate(keyed):
            if used + len(raw) > MAX_WORD_BYTES or not raw:
                raise ValueError("the secrets table's words do not fit the C tables")
            memcpy(&_word_bytes[used], <const char*>raw, len(raw))
            _word_offset[group][w] = used
            _word_length[group][w] = len(raw)
            _word_whole[group][w] = raw in whole
            used += len(raw)
        counts = [0] * 256
        for raw in keyed:
            counts[raw[0] if group == G_PREFIX else raw[len(raw) - 1]] += 1
        total = 0
        for b in range(256):
            _index_start[group][b] = total
            total += counts[b]
        _index_start[group][256] = total
    for b in range(256):
        _CLASS[b] = B_WORD if _is_word(<unsigned char>b) else B_OTHER
    for b in (61, 58, 32, 9, 37, 92):
        _CLASS[b] = B_SEPARATOR
    _CLASS[45] = B_DASH
    for raw in groups[G_PREFIX]:
        if _is_word(raw[0]):
            _CLASS[raw[0]] = B_START
    _CLASS[65] = B_START  # 'A': an AWS access key id beside its secret (_aws_pair)


cdef inline bint _base64_char(unsigned char c) noexcept:
    return (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) or c == 47 or c == 43


cdef bint _aws_pair(const unsigned char* s, Py_ssize_t n, Py_ssize_t i) noexcept:
    """At i: an AWS access key id (AKIA or ASIA and 16 upper-case letters or digits), 1 to 8
    separators, then 40 base64 characters and no more: a secret access key beside its id."""
    cdef Py_ssize_t k, j, run = 0
    cdef unsigned char c
    if not (_at(s, n, i, "AKIA", 4) or _at(s, n, i, "ASIA", 4)) or i + 20 > n:
        return False
    for k in range(i + 4, i + 20):
        c = s[k]
        if not ((c >= 48 and c <= 57) or (c >= 65 and c <= 90)):
            return False
    k = i + 20
    while k < n and run < 8 and (s[k] == 32 or s[k] == 9 or s[k] == 44 or s[k] == 59 or s[k] == 58
                                 or s[k] == 124 or s[k] == 61 or s[k] == 34 or s[k] == 39):
        k += 1
        run += 1
    if run == 0 or k + 40 > n:
        return False
    for j in range(k, k + 40):
        if not _base64_char(s[j]):
            return False
    return k + 40 == n or not _base64_char(s[k + 40])


cdef bint _userinfo(const unsigned char* s, Py_ssize_t n, Py_ssize_t i) noexcept:
    """After '://' at i: 1 to 600 bytes other than '/', '@' and white space, then '@'."""
    cdef Py_ssize_t k = i
    cdef unsigned char c
    while k < n and k - i <= 600:
        c = s[k]
        if c == 64:  # '@'
            return k > i
        if c == 47 or c == 32 or (c >= 9 and c <= 13):  # '/', ' ', \t \n \v \f \r
            return False
        k += 1
    return False


# Byte classes for _suspicious: most bytes of most strings are plain word characters, which cost
# one table look-up each.
cdef enum:
    B_WORD = 0        # a word character that starts no trigger
    B_OTHER = 1       # a non-word byte that starts no trigger
    B_SEPARATOR = 2   # '=', ':', ' ', '\t': an assignment, a URL or a scheme word may end here
    B_DASH = 3        # '-': '-----BEGIN'
    B_START = 4       # a word character a token format starts with (e g x s r A n S)

cdef unsigned char _CLASS[256]   # set by configure_triggers


cdef inline bint _prefix_at(const unsigned char* s, Py_ssize_t n, Py_ssize_t i, unsigned char c) noexcept:
    """Whether a token format's prefix starts at i."""
    cdef int w
    for w in range(_index_start[G_PREFIX][c], _index_start[G_PREFIX][c + 1]):
        if _at(s, n, i, <const char*>&_word_bytes[_word_offset[G_PREFIX][w]], _word_length[G_PREFIX][w]):
            return True
    return False


cdef bint _suspicious(const unsigned char* s, Py_ssize_t n) noexcept:
    """Whether ``outputs.redact.TRIGGER`` would match these bytes (tests check both agree)."""
    cdef Py_ssize_t i = 0, c_at
    cdef unsigned char c, k
    while i < n:
        c = s[i]
        k = _CLASS[c]
        if k == B_WORD or k == B_START:  # a word starts here: only its first letter can matter
            if k == B_START and (_prefix_at(s, n, i, c) or (c == 65 and _aws_pair(s, n, i))):
                return True
            i += 1
            while i < n and (_CLASS[s[i]] == B_WORD or _CLASS[s[i]] == B_START):
                i += 1
            continue
        i += 1
        if k == B_OTHER:
            continue
        c_at = i - 1
        if k == B_DASH:
            if _prefix_at(s, n, c_at, c):
                return True
        elif c == 61:  # '='
            if _assigned(s, n, c_at, c_at + 1):
                return True
        elif c == 58:  # ':'
            if (_at(s, n, c_at, "://", 3) and _userinfo(s, n, c_at + 3)) or _assigned(s, n, c_at, c_at + 1):
                return True
        elif c == 92:  # '\\': '\\u003d' or '\\u003a', an '=' or ':' escaped in JSON text
            if (c_at + 5 < n and _at(s, n, c_at, "\\u003", 5) and (s[c_at + 5] | 32) in (97, 100)
                    and _assigned(s, n, c_at, c_at + 6)):
                return True
        elif c == 37:  # '%': '%3D' or '%3A', an '=' or ':' URL-encoded
            if (c_at + 2 < n and s[c_at + 1] == 51 and (s[c_at + 2] | 32) in (97, 100)
                    and _assigned(s, n, c_at, c_at + 3)):
                return True
        elif _spaced(s, c_at):
            return True  # ' ' or '\t' after a scheme word, a command-line flag or SQL
    return False


def suspicious(data) -> bool:
    """``_suspicious`` on a str (as UTF-8) or bytes: the masking triggers, in C."""
    cdef bytes raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    return _suspicious(raw, len(raw))


# -- tables --------------------------------------------------------------------------------------
cdef class KeyTable:
    """A key -> action table (1 decode, 2 credential, 3 ours) with a C hash filter in front."""

    cdef uint64_t slots[SLOTS]
    cdef dict actions  # bytes key -> action

    def __cinit__(self, dict table):
        cdef bytes key
        cdef uint64_t h
        cdef Py_ssize_t i
        self.actions = {}
        for i in range(SLOTS):
            self.slots[i] = 0
        for text, action in table.items():
            key = text.encode("utf-8")
            self.actions[key] = action
            h = _fnv(key, len(key))
            i = h & (SLOTS - 1)
            while self.slots[i] != 0:
                i = (i + 1) & (SLOTS - 1)
            self.slots[i] = h

    cdef inline bint maybe(self, uint64_t h) noexcept:
        cdef Py_ssize_t i = h & (SLOTS - 1)
        while self.slots[i] != 0:
            if self.slots[i] == h:
                return True
            i = (i + 1) & (SLOTS - 1)
        return False


cdef class KeyClassifier:
    """``classify(key) -> int`` (non-zero: the key holds a credential), remembered by the key's exact
    bytes (hash, then a byte comparison: a crafted hash collision cannot borrow another key's
    answer). Bounded; when full, keys not yet seen are asked anew every time."""

    cdef uint64_t hashes[KEY_SLOTS]
    cdef unsigned int offsets[KEY_SLOTS]
    cdef unsigned short lengths[KEY_SLOTS]
    cdef unsigned char answers[KEY_SLOTS]
    cdef unsigned char arena[KEY_ARENA]
    cdef Py_ssize_t arena_used, count
    cdef object classify

    def __cinit__(self, classify):
        cdef Py_ssize_t i
        self.classify = classify
        self.arena_used = 0
        self.count = 0
        for i in range(KEY_SLOTS):
            self.hashes[i] = 0

    cdef int answer(self, const unsigned char* p, Py_ssize_t n, uint64_t h) except -1:
        cdef Py_ssize_t i = h & (KEY_SLOTS - 1)
        cdef int found
        while self.hashes[i] != 0:
            if self.hashes[i] == h and self.lengths[i] == n and memcmp(self.arena + self.offsets[i], p, n) == 0:
                return self.answers[i]
            i = (i + 1) & (KEY_SLOTS - 1)
        found = 1 if self.classify(p[:n].decode("utf-8", "surrogatepass")) else 0
        if n <= MAX_KEY_CACHED and self.count < KEY_SLOTS * 3 // 4 and self.arena_used + n <= KEY_ARENA:
            memcpy(self.arena + self.arena_used, p, n)
            self.hashes[i] = h
            self.offsets[i] = <unsigned int>self.arena_used
            self.lengths[i] = <unsigned short>n
            self.answers[i] = <unsigned char>found
            self.arena_used += n
            self.count += 1
        return found


cdef class Schema:
    """Field kinds per message type, from the protobuf descriptors (``attributes.wire_schema``).

    Type 0 is the export request. ``entry`` (resource_*), ``scope`` (scope_*) and ``record``
    (spans, log_records) are type indices, ``scopes_field``/``records_field``/``attributes_field``
    field numbers; a request without records (metrics) has ``record`` -1. ``body_field``: the
    record's body (log records; 0 for spans).
    """

    cdef unsigned char kind[MAX_TYPES][MAX_FIELD]
    cdef unsigned char wt[MAX_TYPES][MAX_FIELD]
    cdef unsigned char wt_alt[MAX_TYPES][MAX_FIELD]
    cdef unsigned char child[MAX_TYPES][MAX_FIELD]
    cdef public int entry, scope, record, scopes_field, records_field, attributes_field, anyvalue, body_field

    def __cinit__(self, list types, int entry, int scope, int record, int scopes_field, int records_field,
                  int attributes_field, int anyvalue, int body_field=0):
        cdef int t, f
        if len(types) > MAX_TYPES:
            raise ValueError("too many message types for the wire schema")
        for t in range(MAX_TYPES):
            for f in range(MAX_FIELD):
                self.kind[t][f] = K_UNKNOWN
                self.wt[t][f] = 255
                self.wt_alt[t][f] = 255
                self.child[t][f] = 0
        for t, fields in enumerate(types):
            for number, kind, wire_type, alt, child in fields:
                if number >= MAX_FIELD:
                    continue  # left unknown: such a field is discarded, never passed on unread
                self.kind[t][number] = kind
                self.wt[t][number] = wire_type
                self.wt_alt[t][number] = alt
                self.child[t][number] = child
        self.entry, self.scope, self.record = entry, scope, record
        self.scopes_field, self.records_field, self.attributes_field = scopes_field, records_field, attributes_field
        self.anyvalue = anyvalue
        self.body_field = body_field


# -- walking ------------------------------------------------------------------------------------
cdef int _field(const unsigned char* buf, Py_ssize_t* pos, Py_ssize_t end, int t, uint64_t tag, int depth,
                Schema sc, KeyClassifier keys) except -1:
    """Checks one field of a message of type ``t`` (its tag just read at ``pos``); returns flags."""
    cdef uint64_t number = tag >> 3, wire_type = tag & 7
    cdef int kind = K_UNKNOWN
    cdef Py_ssize_t start, field_end
    if number == 0:
        raise ValueError("field number 0")
    if number < MAX_FIELD:
        kind = sc.kind[t][number]
        if kind != K_UNKNOWN and wire_type != sc.wt[t][number] and wire_type != sc.wt_alt[t][number]:
            kind = K_UNKNOWN  # protobuf keeps a field of the wrong wire type as an unknown field
    if kind == K_UNKNOWN or wire_type != 2:
        pos[0] = _skip(buf, pos[0], end, tag, depth)
        return F_UNKNOWN if kind == K_UNKNOWN else 0
    start = _length(buf, pos[0], end, &field_end)
    pos[0] = field_end
    if kind == K_TEXT:
        return F_DIRTY if _suspicious(buf + start, field_end - start) else 0
    if kind == K_MSG:
        return _walk(buf, start, field_end, sc.child[t][number], depth + 1, sc, keys)
    if kind == K_KEY:
        return F_DIRTY if keys.answer(buf + start, field_end - start, _fnv(buf + start, field_end - start)) else 0
    return 0


cdef int _walk(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end, int t, int depth, Schema sc,
               KeyClassifier keys) except -1:
    """Flags of a whole message of type ``t`` and everything below it."""
    cdef int flags = 0
    cdef uint64_t tag
    if depth > MAX_DEPTH:
        raise ValueError("message nested too deeply")
    while pos < end:
        pos = _varint(buf, pos, end, &tag)
        flags |= _field(buf, &pos, end, t, tag, depth, sc, keys)
    return flags


cdef object _value(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end):
    """An AnyValue: strings and integers decoded here, anything else by the protobuf runtime."""
    cdef uint64_t tag, n
    cdef Py_ssize_t pos = start
    if start == end:
        return None
    pos = _varint(buf, pos, end, &tag)
    if tag == 0x0A:  # string_value
        pos = _varint(buf, pos, end, &n)
        if pos + <Py_ssize_t>n == end:
            return buf[pos:end].decode("utf-8", "surrogatepass")
    elif tag == 0x18:  # int_value
        pos = _varint(buf, pos, end, &n)
        if pos == end:
            return <long long>n
    return to_python(AnyValue.FromString(buf[start:end]))


# Map keys of vendor bodies repeat on every record (``eventSource``, ``userIdentity``...): each
# short ASCII key is decoded once and kept in a slot chosen by its hash, so a record's keys cost a
# hash and a comparison instead of a new string each (and their dict hash is computed once).
# Fixed size, overwritten on collision: hostile keys cost what they would without it.
cdef uint64_t _name_hashes[NAME_SLOTS]
cdef list _names = [None] * NAME_SLOTS


cdef object _name(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end):
    cdef Py_ssize_t n = end - start
    cdef uint64_t h
    cdef Py_ssize_t slot
    cdef object cached, text
    if n > MAX_NAME:
        return buf[start:end].decode("utf-8", "surrogatepass")
    h = _fnv(buf + start, n)
    slot = h & (NAME_SLOTS - 1)
    cached = _names[slot]
    if (cached is not None and _name_hashes[slot] == h and PyUnicode_GET_LENGTH(cached) == n
            and memcmp(PyUnicode_DATA(cached), buf + start, n) == 0):
        return cached
    text = buf[start:end].decode("utf-8", "surrogatepass")
    if PyUnicode_IS_COMPACT_ASCII(text):  # one byte per character: comparable with the bytes
        _names[slot] = text
        _name_hashes[slot] = h
    return text


cdef object _any(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end, int depth):
    """A whole AnyValue as a plain Python value (``anyvalue.to_python`` without a protobuf object
    per value): what a vendor record in a log body is read as. Unknown fields are skipped; of
    the oneof, the last value set wins, as in protobuf.

    Bytes straight off the wire may repeat a message field, which protobuf merges (two
    ``kvlist_value``s are one map of both; a KeyValue with two values has their merge): those
    raise ReadAsPython, and the caller reads the value through protobuf, so what is read is
    always what protobuf, and everything downstream, sees."""
    cdef uint64_t tag, n, member = 0  # the oneof member set last
    cdef Py_ssize_t inner_end, p, q, kv_end, key_start, key_end, value_start, value_end
    cdef double d
    cdef object out = None, key
    cdef list items
    cdef dict mapping
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    while pos < end:
        pos = _varint(buf, pos, end, &tag)
        if tag == 0x0A or tag == 0x10 or tag == 0x18 or tag == 0x21 or tag == 0x3A:
            member = tag
        elif tag == 0x2A or tag == 0x32:
            if tag == member:
                raise ReadAsPython("a repeated map or list in one value (protobuf merges them)")
            member = tag
        if tag == 0x0A or tag == 0x3A:  # string_value, bytes_value
            pos = _length(buf, pos, end, &inner_end)
            out = (buf[pos:inner_end].decode("utf-8", "surrogatepass") if tag == 0x0A
                   else bytes(buf[pos:inner_end]))
            pos = inner_end
        elif tag == 0x10:  # bool_value
            pos = _varint(buf, pos, end, &n)
            out = n != 0
        elif tag == 0x18:  # int_value (int64, two's complement)
            pos = _varint(buf, pos, end, &n)
            out = <long long>n
        elif tag == 0x21:  # double_value
            if pos + 8 > end:
                raise ValueError("double beyond its message")
            memcpy(&d, buf + pos, 8)
            out = d
            pos += 8
        elif tag == 0x2A:  # array_value: ArrayValue { repeated AnyValue values = 1 }
            pos = _length(buf, pos, end, &inner_end)
            items = []
            p = pos
            while p < inner_end:
                p = _varint(buf, p, inner_end, &tag)
                if tag == 0x0A:
                    p = _length(buf, p, inner_end, &value_end)
                    items.append(_any(buf, p, value_end, depth + 1))
                    p = value_end
                else:
                    p = _skip(buf, p, inner_end, tag, depth + 1)
            out = items
            pos = inner_end
        elif tag == 0x32:  # kvlist_value: KeyValueList { repeated KeyValue values = 1 }
            pos = _length(buf, pos, end, &inner_end)
            mapping = {}
            p = pos
            while p < inner_end:
                p = _varint(buf, p, inner_end, &tag)
                if tag != 0x0A:
                    p = _skip(buf, p, inner_end, tag, depth + 1)
                    continue
                p = _length(buf, p, inner_end, &kv_end)
                key_start = key_end = p
                value_start = value_end = -1
                q = p
                while q < kv_end:  # KeyValue { string key = 1; AnyValue value = 2 }; the last wins
                    q = _varint(buf, q, kv_end, &tag)
                    if tag == 0x0A:
                        key_start = _length(buf, q, kv_end, &key_end)
                        q = key_end
                    elif tag == 0x12:
                        if value_start >= 0:
                            raise ReadAsPython("a KeyValue with two values (protobuf merges them)")
                        value_start = _length(buf, q, kv_end, &value_end)
                        q = value_end
                    else:
                        q = _skip(buf, q, kv_end, tag, depth + 1)
                key = _name(buf, key_start, key_end)
                mapping[key] = _any(buf, value_start, value_end, depth + 1) if value_start >= 0 else None
                p = kv_end
            out = mapping
            pos = inner_end
        else:
            pos = _skip(buf, pos, end, tag, depth + 1)
    return out


def any_value(bytes data):
    """A serialized AnyValue as str, int, float, bool, bytes, list or dict (None when unset)."""
    cdef const unsigned char* buf = data
    return _any(buf, 0, len(data), 0)


def body_value(bytes data, Py_ssize_t at, Py_ssize_t limit):
    """The AnyValue whose length prefix is at ``at`` in ``data`` (a log record's body, where the
    reader found it in the request), as ``any_value`` reads it; None when it is longer than
    ``limit`` bytes. Saves serializing the body again to read it."""
    cdef const unsigned char* buf = data
    cdef Py_ssize_t end, start
    if at < 0 or at >= len(data):
        raise ValueError("no body at that position")
    start = _length(buf, at, len(data), &end)
    if end - start > limit:
        return None
    return _any(buf, start, end, 0)


cdef int _object_body(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end) except -1:
    """What the AnyValue body whose length prefix is at ``pos`` holds, when it looks like a vendor
    record: BODY_MAP (kvlist_value), BODY_JSON (a string whose first non-blank byte is '{'), else
    0. The last value field decides, as it does for protobuf (a oneof keeps the last one set)."""
    cdef Py_ssize_t body_end, p, text_start = -1, text_end = 0
    cdef uint64_t tag
    cdef int last = 0
    p = _length(buf, pos, end, &body_end)
    while p < body_end:
        p = _varint(buf, p, body_end, &tag)
        if tag == 0x0A:  # string_value
            text_start = _length(buf, p, body_end, &text_end)
            p = text_end
            last = 1
        elif tag == 0x32:  # kvlist_value
            _length(buf, p, body_end, &p)
            last = 6
        else:
            if (tag >> 3) >= 1 and (tag >> 3) <= 7:
                last = <int>(tag >> 3)
            p = _skip(buf, p, body_end, tag, 0)
    if last == 6:
        return BODY_MAP
    if last != 1:
        return 0
    while text_start < text_end and (buf[text_start] == 32 or (buf[text_start] >= 9 and buf[text_start] <= 13)):
        text_start += 1
    return BODY_JSON if text_start < text_end and buf[text_start] == 123 else 0  # '{'


cdef tuple _read(bytes data, Py_ssize_t pos, Py_ssize_t end, int t, Schema sc, KeyTable table,
                 KeyClassifier keys, int depth):
    """A record: its wanted attributes, ``special``, flags of the whole record, the indices of
    its own attributes that hold something to mask (None when none do), and where its body's
    length prefix is when the body is a map (-1 otherwise, or when the body field repeats,
    which protobuf merges)."""
    cdef const unsigned char* buf = data
    cdef Py_ssize_t kv_end, p, key_start = 0, key_len = 0, value_start, value_end, index = -1
    cdef Py_ssize_t body_at = -1
    cdef int bodies = 0, body_kind
    cdef uint64_t tag, inner, want = sc.attributes_field, h
    cdef dict out = {}
    cdef list dirty = None
    cdef int special = 0
    cdef int flags = 0, values, kv_flags, other
    cdef int kv_type = sc.child[t][want] if want < MAX_FIELD else 0
    cdef object action
    while pos < end:
        pos = _varint(buf, pos, end, &tag)
        if (tag >> 3) != want or (tag & 7) != 2:
            if (tag >> 3) == <uint64_t>sc.body_field and (tag & 7) == 2:
                bodies += 1
                body_kind = _object_body(buf, pos, end)
                if body_kind:
                    flags |= F_OBJECT_BODY
                body_at = pos if body_kind == BODY_MAP and bodies == 1 else -1
            other = _field(buf, &pos, end, t, tag, depth, sc, keys)
            if other & F_DIRTY:
                other |= F_ELSEWHERE
            flags |= other
            continue
        p = _length(buf, pos, end, &kv_end)
        pos = kv_end
        index += 1
        key_len = -1
        values = 0
        kv_flags = 0
        value_start = value_end = 0
        while p < kv_end:  # KeyValue: key = 1, value = 2, anything else checked by the schema
            p = _varint(buf, p, kv_end, &inner)
            if inner == 0x0A:
                p = _length(buf, p, kv_end, &value_end)
                key_start, key_len = p, value_end - p
                p = value_end
            elif inner == 0x12:
                value_start = _length(buf, p, kv_end, &value_end)
                p = value_end
                values += 1
                kv_flags |= _walk(buf, value_start, value_end, sc.anyvalue, depth + 2, sc, keys)
            else:
                kv_flags |= _field(buf, &p, kv_end, kv_type, inner, depth + 1, sc, keys)
        if values > 1:
            raise ReadAsPython("a KeyValue with two values (protobuf merges them)")
        if key_len >= 0:
            h = _fnv(buf + key_start, key_len)
            if keys.answer(buf + key_start, key_len, h):
                kv_flags |= F_DIRTY
        if kv_flags & F_DIRTY:
            if dirty is None:
                dirty = []
            dirty.append(index)
        flags |= kv_flags
        if key_len < 0:
            continue
        if not table.maybe(h):
            continue
        action = table.actions.get(buf[key_start:key_start + key_len])
        if action is None:
            continue
        if action == 3:
            special |= 2
            continue
        if action == 2:
            special |= 1
        out[buf[key_start:key_start + key_len].decode("utf-8", "surrogatepass")] = (
            _value(buf, value_start, value_end) if values else None)
    return out, special, flags, dirty, body_at


def read_request(bytes data, Schema sc, KeyTable table, KeyClassifier keys):
    """Every record's (wanted attributes, special, flags) in request order; the indices of the
    resource entries whose own parts (resource, scopes, schema urls) need masking; and whether any
    field is unknown.

    Traces and logs nest alike: request.resource_* (field 1) -> scope_* -> spans or log_records.
    """
    cdef const unsigned char* buf = data
    cdef Py_ssize_t end = len(data), pos = 0, p, q, r_end, s_end, record_end, start
    cdef uint64_t tag
    cdef int entry = -1, outer, flags
    cdef bint unknown = False
    cdef list reads = [], dirty_entries = []
    cdef tuple read
    while pos < end:
        pos = _varint(buf, pos, end, &tag)
        if tag != 0x0A:
            unknown |= (_field(buf, &pos, end, 0, tag, 0, sc, keys) & F_UNKNOWN) != 0
            continue
        p = _length(buf, pos, end, &r_end)
        pos = r_end
        entry += 1
        outer = 0
        while p < r_end:  # one resource_*
            p = _varint(buf, p, r_end, &tag)
            if (tag >> 3) != <uint64_t>sc.scopes_field or (tag & 7) != 2:
                outer |= _field(buf, &p, r_end, sc.entry, tag, 1, sc, keys)
                continue
            q = _length(buf, p, r_end, &s_end)
            p = s_end
            while q < s_end:  # one scope_*
                q = _varint(buf, q, s_end, &tag)
                if (tag >> 3) != <uint64_t>sc.records_field or (tag & 7) != 2:
                    outer |= _field(buf, &q, s_end, sc.scope, tag, 2, sc, keys)
                    continue
                start = _length(buf, q, s_end, &record_end)
                q = record_end
                read = _read(data, start, record_end, sc.record, sc, table, keys, 3)
                flags = read[2]
                unknown |= (flags & F_UNKNOWN) != 0
                reads.append(read)
        if outer & F_DIRTY:
            dirty_entries.append(entry)
        unknown |= (outer & F_UNKNOWN) != 0
    return reads, dirty_entries, unknown


def scan_request(bytes data, Schema sc, KeyClassifier keys):
    """For requests read whole by Python (metrics): the indices of resource entries with anything
    to mask anywhere below them, and whether any field is unknown."""
    cdef const unsigned char* buf = data
    cdef Py_ssize_t end = len(data), pos = 0, start, r_end
    cdef uint64_t tag
    cdef int entry = -1, flags
    cdef bint unknown = False
    cdef list dirty_entries = []
    while pos < end:
        pos = _varint(buf, pos, end, &tag)
        if tag != 0x0A:
            unknown |= (_field(buf, &pos, end, 0, tag, 0, sc, keys) & F_UNKNOWN) != 0
            continue
        start = _length(buf, pos, end, &r_end)
        pos = r_end
        entry += 1
        flags = _walk(buf, start, r_end, sc.entry, 1, sc, keys)
        if flags & F_DIRTY:
            dirty_entries.append(entry)
        unknown |= (flags & F_UNKNOWN) != 0
    return dirty_entries, unknown


def read_record(bytes data, Schema sc, KeyTable table, KeyClassifier keys):
    """One serialized span or log record (of the schema's record type), for tests."""
    return _read(data, 0, len(data), sc.record, sc, table, keys, 3)


cdef Py_ssize_t _count_at(const unsigned char* buf, Py_ssize_t pos, Py_ssize_t end, const int* path,
                          int depth, int last, Py_ssize_t stop_after) noexcept:
    """Fields numbered ``path[depth]`` at ``depth``, nested along ``path``; the count so far when
    the bytes cannot be walked (the protobuf runtime then says what is wrong)."""
    cdef Py_ssize_t found = 0
    cdef uint64_t tag, length, ignored
    cdef int kind
    while pos < end:
        try:
            pos = _varint(buf, pos, end, &tag)
        except ValueError:
            return found
        kind = <int>(tag & 7)
        if kind == 0:
            try:
                pos = _varint(buf, pos, end, &ignored)
            except ValueError:
                return found
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        elif kind == 2:
            try:
                pos = _varint(buf, pos, end, &length)
            except ValueError:
                return found
            if length > <uint64_t>(end - pos):
                return found
            if <int>(tag >> 3) == path[depth]:
                if depth == last:
                    found += 1
                else:
                    found += _count_at(buf, pos, pos + <Py_ssize_t>length, path, depth + 1, last,
                                       stop_after - found)
                if found > stop_after:
                    return found
            pos += <Py_ssize_t>length
        else:
            return found
    return found


def count_entries(bytes data, tuple path, Py_ssize_t stop_after):
    """``admission.count_records`` in C: the same walk, the same answer."""
    cdef int steps[8]
    cdef int n = len(path)
    if n < 1 or n > 8:
        raise ValueError("a path of 1 to 8 field numbers")
    for i in range(n):
        steps[i] = path[i]
    return _count_at(<const unsigned char*>data, 0, len(data), steps, 0, n - 1, stop_after)

