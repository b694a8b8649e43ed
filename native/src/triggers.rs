//! The masking triggers of `outputs.redact.TRIGGER`, on bytes: whether a string may hold a
//! credential and must go through the masking rules.
//!
//! One pass, linear in the string's length: every byte costs a table look-up, and only the bytes
//! where a trigger can start (a token format's first letter, `=`, `:`, a space, `-`, `%`, `\`)
//! look further, each a bounded distance. The words come from `rules/secrets.yaml`
//! (`Triggers::new`, given the lists `outputs.redact.trigger_words` builds its own trigger from),
//! so the two triggers are built from one table; `tests/pipeline/test_wire.py` checks they agree.

/// Token formats: at the start of a word (or at a '-').
const G_PREFIX: usize = 0;
/// Assignment words: before '=' or ':'.
const G_ASSIGN: usize = 1;
/// Scheme words, flags, SQL: before ' ' or '\t'.
const G_SPACE: usize = 2;
/// Spaces or tabs between a word (and its quotes) and its '=' or ':'.
const MAX_GAP: usize = 8;

// Byte classes: most bytes of most strings are plain word characters, one look-up each.
const B_WORD: u8 = 0; // a word character that starts no trigger
const B_OTHER: u8 = 1; // a non-word byte that starts no trigger
const B_SEPARATOR: u8 = 2; // '=', ':', ' ', '\t', '%', '\\'
const B_DASH: u8 = 3; // '-': '-----BEGIN'
const B_START: u8 = 4; // a word character a token format starts with

/// Words of one group, sorted by the byte they are indexed by, with where each byte's run starts.
#[derive(Debug, Clone)]
struct Group {
    words: Vec<Vec<u8>>,
    whole: Vec<bool>, // G_ASSIGN: only with a value that may be a code after it
    start: [usize; 257],
}

impl Group {
    fn new(mut words: Vec<Vec<u8>>, by_first: bool, whole: &[Vec<u8>]) -> Group {
        words.retain(|w| !w.is_empty());
        let index = |w: &Vec<u8>| usize::from(if by_first { w[0] } else { w[w.len() - 1] });
        words.sort_by_key(index);
        let mut counts = [0usize; 256];
        for w in &words {
            counts[index(w)] += 1;
        }
        let mut start = [0usize; 257];
        let mut total = 0;
        for b in 0..256 {
            start[b] = total;
            total += counts[b];
        }
        start[256] = total;
        let whole = words.iter().map(|w| whole.contains(w)).collect();
        Group { words, whole, start }
    }

    #[inline]
    fn run(&self, b: u8) -> std::ops::Range<usize> {
        self.start[usize::from(b)]..self.start[usize::from(b) + 1]
    }
}

/// The trigger tables, built once from the secrets table's word lists.
#[derive(Debug, Clone)]
pub struct Triggers {
    groups: [Group; 3],
    class: [u8; 256],
}

#[inline]
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

#[inline]
fn base64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'/' || c == b'+'
}

#[inline]
fn at(s: &[u8], i: usize, word: &[u8]) -> bool {
    s.len() >= i + word.len() && &s[i..i + word.len()] == word
}

/// Whether `s[..k]` ends with `word` (lower case), ignoring ASCII case.
#[inline]
fn ends_with(s: &[u8], k: usize, word: &[u8]) -> bool {
    k >= word.len() && s[k - word.len()..k].iter().zip(word).all(|(c, w)| c.to_ascii_lowercase() == *w)
}

/// After the '=' or ':' that follows `code`: up to two spaces, a quote or none, then eight
/// characters (UTF-8 lead bytes) that may be part of an authorization code; `"code": 200` has
/// three.
fn code_value(s: &[u8], mut i: usize) -> bool {
    let n = s.len();
    let mut skipped = 0;
    while skipped < 2 && i < n && s[i] == b' ' {
        i += 1;
        skipped += 1;
    }
    if i < n && (s[i] == b'"' || s[i] == b'\'') {
        i += 1;
    }
    let mut chars = 0;
    while i < n && chars < 8 {
        let c = s[i];
        if matches!(
            c,
            b' ' | b'\t' | b'\n' | 12 | b'\r' | b'"' | b'\'' | b'&' | b',' | b';' | b'{' | b'}' | b'[' | b']'
        ) {
            return false;
        }
        if c & 0xC0 != 0x80 {
            chars += 1;
        }
        i += 1;
    }
    chars == 8
}

/// At i: an AWS access key id (AKIA or ASIA and 16 upper-case letters or digits), 1 to 8
/// separators, then 40 base64 characters and no more: a secret access key beside its id.
fn aws_pair(s: &[u8], i: usize) -> bool {
    let n = s.len();
    if !(at(s, i, b"AKIA") || at(s, i, b"ASIA")) || i + 20 > n {
        return false;
    }
    if !s[i + 4..i + 20].iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()) {
        return false;
    }
    let mut k = i + 20;
    let mut run = 0;
    while k < n && run < 8 && matches!(s[k], b' ' | b'\t' | b',' | b';' | b':' | b'|' | b'=' | b'"' | b'\'') {
        k += 1;
        run += 1;
    }
    if run == 0 || k + 40 > n || !s[k..k + 40].iter().all(|&c| base64_char(c)) {
        return false;
    }
    k + 40 == n || !base64_char(s[k + 40])
}

/// After '://' at i: 1 to 600 bytes other than '/', '@' and white space, then '@'.
fn userinfo(s: &[u8], i: usize) -> bool {
    let mut k = i;
    while k < s.len() && k - i <= 600 {
        match s[k] {
            b'@' => return k > i,
            b'/' | b' ' | 9..=13 => return false,
            _ => k += 1,
        }
    }
    false
}

impl Triggers {
    /// Tables that trigger on nothing (before the secrets table is configured).
    pub fn empty() -> Triggers {
        Triggers::new(&[], &[], &[], &[])
    }

    /// Prefixes keep their case; words are compared lower case.
    pub fn new(prefixes: &[Vec<u8>], assignment: &[Vec<u8>], whole: &[Vec<u8>], space: &[Vec<u8>]) -> Triggers {
        let lower = |ws: &[Vec<u8>]| ws.iter().map(|w| w.to_ascii_lowercase()).collect::<Vec<_>>();
        let whole = lower(whole);
        let groups = [
            Group::new(prefixes.to_vec(), true, &[]),
            Group::new(lower(assignment), false, &whole),
            Group::new(lower(space), false, &[]),
        ];
        let mut class = [B_OTHER; 256];
        for (b, c) in class.iter_mut().enumerate() {
            if is_word(b as u8) {
                *c = B_WORD;
            }
        }
        for b in [b'=', b':', b' ', b'\t', b'%', b'\\'] {
            class[usize::from(b)] = B_SEPARATOR;
        }
        class[usize::from(b'-')] = B_DASH;
        for w in &groups[G_PREFIX].words {
            if is_word(w[0]) {
                class[usize::from(w[0])] = B_START;
            }
        }
        class[usize::from(b'A')] = B_START; // an AWS access key id beside its secret (aws_pair)
        Triggers { groups, class }
    }

    /// Whether a token format's prefix starts at i.
    #[inline]
    fn prefix_at(&self, s: &[u8], i: usize, c: u8) -> bool {
        let g = &self.groups[G_PREFIX];
        g.run(c).any(|w| at(s, i, &g.words[w]))
    }

    /// At an '=' or ':' at i (or its encoding, the value then at `value_at`): an assignment word,
    /// up to two quotes, up to MAX_GAP spaces or tabs, before it (a whole-word one only with a
    /// value that may be a code after it).
    fn assigned(&self, s: &[u8], i: usize, value_at: usize) -> bool {
        let mut k = i;
        let mut skipped = 0;
        while skipped < MAX_GAP && k > 0 && (s[k - 1] == b' ' || s[k - 1] == b'\t') {
            k -= 1;
            skipped += 1;
        }
        skipped = 0;
        while skipped < 2 && k > 0 {
            // a quote: ' or ", backslash-escaped or not, or \u0022 / \u0027
            if s[k - 1] == b'"' || s[k - 1] == b'\'' {
                k -= 1;
                if k > 0 && s[k - 1] == b'\\' {
                    k -= 1;
                }
            } else if k >= 6 && (at(s, k - 6, b"\\u0022") || at(s, k - 6, b"\\u0027")) {
                k -= 6;
            } else {
                break;
            }
            skipped += 1;
        }
        if k == 0 {
            return false;
        }
        let g = &self.groups[G_ASSIGN];
        g.run(s[k - 1].to_ascii_lowercase())
            .any(|w| ends_with(s, k, &g.words[w]) && (!g.whole[w] || code_value(s, value_at)))
    }

    /// At a ' ' or '\t' at c_at: a scheme word, a command-line flag or SQL ends before it.
    fn spaced(&self, s: &[u8], c_at: usize) -> bool {
        if c_at == 0 {
            return false;
        }
        let g = &self.groups[G_SPACE];
        g.run(s[c_at - 1].to_ascii_lowercase()).any(|w| ends_with(s, c_at, &g.words[w]))
    }

    /// Whether `outputs.redact.TRIGGER` would match these bytes.
    pub fn suspicious(&self, s: &[u8]) -> bool {
        let n = s.len();
        let class = &self.class;
        let mut i = 0;
        while i < n {
            let c = s[i];
            let k = class[usize::from(c)];
            if k == B_WORD || k == B_START {
                // a word starts here: only its first letter can matter
                if k == B_START && (self.prefix_at(s, i, c) || (c == b'A' && aws_pair(s, i))) {
                    return true;
                }
                i += 1;
                while i < n && matches!(class[usize::from(s[i])], B_WORD | B_START) {
                    i += 1;
                }
                continue;
            }
            i += 1;
            if k == B_OTHER {
                continue;
            }
            let c_at = i - 1;
            let hit = match c {
                b'-' => self.prefix_at(s, c_at, c),
                b'=' => self.assigned(s, c_at, c_at + 1),
                b':' => (at(s, c_at, b"://") && userinfo(s, c_at + 3)) || self.assigned(s, c_at, c_at + 1),
                // '\u003d' or '\u003a': an '=' or ':' escaped in JSON text
                b'\\' => {
                    c_at + 5 < n
                        && at(s, c_at, b"\\u003")
                        && matches!(s[c_at + 5] | 32, b'a' | b'd')
                        && self.assigned(s, c_at, c_at + 6)
                }
                // '%3D' or '%3A': an '=' or ':' URL-encoded
                b'%' => {
                    c_at + 2 < n
                        && s[c_at + 1] == b'3'
                        && matches!(s[c_at + 2] | 32, b'a' | b'd')
                        && self.assigned(s, c_at, c_at + 3)
                }
                _ => self.spaced(s, c_at), // ' ' or '\t' after a scheme word, a flag or SQL
            };
            if hit {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn sample() -> Triggers {
        Triggers::new(
            &words(&["ghp_", "xoxb-", "-----BEGIN"]),
            &words(&["password", "token", "code"]),
            &words(&["code"]),
            &words(&["bearer", "--token"]),
        )
    }

    #[test]
    fn each_placement_triggers_and_plain_text_does_not() {
        let t = sample();
        for hit in [
            "ghp_abc",
            "x ghp_abc",
            "password=x",
            "\"password\" :  x",
            "Password\t=x",
            "password%3Dx",
            "{\\\"token\\\"\\u003a1}",
            "Authorization: Bearer abc",
            "--token abc",
            "https://user:pw@host",
            "-----BEGIN KEY",
            "code=4/0AbCdEfGh",
            "AKIAABCDEFGHIJKLMNOP:abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        ] {
            assert!(t.suspicious(hit.as_bytes()), "{hit}");
        }
        for quiet in ["plain text", "code=200", "xghp_abc", "https://host/path", "tokens are fine", ""] {
            assert!(!t.suspicious(quiet.as_bytes()), "{quiet}");
        }
    }

    #[test]
    fn unconfigured_tables_trigger_on_nothing() {
        assert!(!Triggers::empty().suspicious(b"password=hunter2"));
    }
}
