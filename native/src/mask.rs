//! Masking the secrets inside one string: the rules of `outputs.redact` (`_TOKEN_RULES`, built
//! from `rules/secrets.yaml`), compiled with the `regex` crate, which matches in time linear in
//! the string whatever an attacker writes.
//!
//! The rules arrive in RE2 syntax, the syntax of the table and of the reference core. The two
//! engines read it alike once four classes are spelled out: RE2's `\b`, `\s`, `\d` and `\w`
//! are ASCII, the `regex` crate's are Unicode (`translate`). Both match leftmost-first and fold
//! case the same way, so a rule finds the same secret in both.
//!
//! `Masker::mask` is `redact.mask_text`: the triggers gate, then each rule in turn replaces its
//! matches. Where the reference's answer hangs on Python's own notion of a digit, a letter or
//! white space outside ASCII, or a pattern uses RE2 syntax this translation does not cover, the
//! answer is `Reference`: the caller asks the reference core, so the two never differ.

use regex::{Regex, RegexBuilder};

use crate::triggers::Triggers;

/// How a found secret is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// `sha256:<16 hex>` of the secret, so that a responder can tell one credential from another.
    Fingerprint,
    /// `[masked]`: the value may be guessable (a password).
    Hide,
}

/// A test beyond the pattern that a match must pass to be a secret (`redact._ACCEPT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Always,
    /// `name=value` holds a secret unless the name is a digest (`hashed_token`) or the `"key"`
    /// of a key/value pair.
    HoldsASecret,
    /// An OAuth code mixes letters with digits or punctuation; an error code does not.
    LooksLikeACode,
    /// An Authorization value whose first word is a common scheme is left to the scheme rule.
    NotASchemeWord,
}

impl Accept {
    pub fn from_code(code: u8) -> Option<Accept> {
        Some(match code {
            0 => Accept::Always,
            1 => Accept::HoldsASecret,
            2 => Accept::LooksLikeACode,
            3 => Accept::NotASchemeWord,
            _ => return None,
        })
    }
}

/// Why a table could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskError(pub String);

impl std::fmt::Display for MaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MaskError {}

/// The reference core must answer for this string (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference;

/// RE2's ASCII white space: `\s` has no vertical tab there.
const SPACE: &str = r"\t\n\f\r ";

/// A pattern in RE2 syntax as the `regex` crate reads it with the same meaning.
pub fn translate(pattern: &str) -> Result<String, MaskError> {
    let unsupported = |what: &str| MaskError(format!("RE2 syntax {what} in {pattern:?} has no translation"));
    let mut out = String::with_capacity(pattern.len() + 32);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    let mut class_start = false; // just after '[' or '[^': a ']' here is a literal
    while let Some(c) = chars.next() {
        let at_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(e) = chars.next() else { return Err(unsupported("a trailing backslash")) };
                let spelled = match (in_class, e) {
                    (false, 'b') => r"(?-u:\b)".to_string(),
                    (false, 'B') => r"(?-u:\B)".to_string(),
                    (false, 's') => format!("[{SPACE}]"),
                    (false, 'S') => format!("[^{SPACE}]"),
                    (false, 'd') => "[0-9]".to_string(),
                    (false, 'D') => "[^0-9]".to_string(),
                    (false, 'w') => "[0-9A-Za-z_]".to_string(),
                    (false, 'W') => "[^0-9A-Za-z_]".to_string(),
                    (true, 's') => SPACE.to_string(),
                    (true, 'd') => "0-9".to_string(),
                    (true, 'w') => "0-9A-Za-z_".to_string(),
                    (true, 'S' | 'D' | 'W' | 'b' | 'B') => return Err(unsupported(&format!("\\{e} in a class"))),
                    (_, 'C' | 'Q' | 'E') => return Err(unsupported(&format!("\\{e}"))),
                    (_, '0'..='9') => return Err(unsupported("an octal or back reference")),
                    _ => format!("\\{e}"),
                };
                out.push_str(&spelled);
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // a POSIX class, [:alpha:]: the same in both, ASCII in both
                out.push('[');
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            // RE2 reads these as themselves inside a class; the regex crate as a nested class
            // or a set operation
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            ']' if in_class && at_start => out.push_str(r"\]"),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '-' if in_class && chars.peek() == Some(&'-') => return Err(unsupported("'--' in a class")),
            _ => out.push(c),
        }
    }
    if in_class {
        return Err(unsupported("an unclosed class"));
    }
    Ok(out)
}

fn compile(pattern: &str) -> Result<Regex, MaskError> {
    RegexBuilder::new(&translate(pattern)?)
        // the counted classes ({1,256} of a Unicode class) need more than the default 10 MB
        .size_limit(64 << 20)
        .build()
        .map_err(|e| MaskError(format!("{pattern:?}: {e}")))
}

#[derive(Debug, Clone)]
struct Rule {
    regex: Regex,
    how: How,
    accept: Accept,
    /// Group 1 is the secret (else the whole match).
    grouped: bool,
}

/// The rules of one secrets table, compiled once.
#[derive(Debug, Clone)]
pub struct Masker {
    triggers: Triggers,
    rules: Vec<Rule>,
    /// Every rule in one pattern: most strings the triggers pick hold no secret at all.
    any: Regex,
    /// Scheme words (`bearer`, `basic`...): a match that is one is not a secret.
    schemes: Vec<String>,
    mask_prefix: String,
    opaque: String,
}

impl Masker {
    /// `rules`: (RE2 pattern, how, accept) in the reference's order, which matters: a later rule
    /// sees what the earlier ones left.
    pub fn new(
        triggers: Triggers,
        rules: &[(String, How, Accept)],
        schemes: Vec<String>,
        mask_prefix: String,
        opaque: String,
    ) -> Result<Masker, MaskError> {
        let compiled = rules
            .iter()
            .map(|(pattern, how, accept)| {
                let regex = compile(pattern)?;
                Ok(Rule { grouped: regex.captures_len() > 1, regex, how: *how, accept: *accept })
            })
            .collect::<Result<Vec<_>, MaskError>>()?;
        let any = compile(&rules.iter().map(|(p, _, _)| format!("(?:{p})")).collect::<Vec<_>>().join("|"))?;
        Ok(Masker { triggers, rules: compiled, any, schemes, mask_prefix, opaque })
    }

    /// A masker from `outputs.redact.native_table_lines`, as `fuzz/masking_table.txt` holds it:
    /// how the fuzz target and `cargo test` build the real table without an interpreter.
    pub fn from_table(text: &str) -> Result<Masker, MaskError> {
        let bad = |line: &str| MaskError(format!("table line {line:?}"));
        let unhex = |hex: &str| -> Option<String> {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()?;
            String::from_utf8(bytes).ok()
        };
        let mut words: [Vec<Vec<u8>>; 4] = Default::default();
        let (mut schemes, mut rules) = (Vec::new(), Vec::new());
        for line in text.lines().filter(|l| !l.is_empty()) {
            let parts: Vec<&str> = line.split('\t').collect();
            match parts.as_slice() {
                ["rule", how, accept, pattern] => {
                    let how = match *how {
                        "1" => How::Fingerprint,
                        "2" => How::Hide,
                        _ => return Err(bad(line)),
                    };
                    let accept = accept.parse().ok().and_then(Accept::from_code).ok_or_else(|| bad(line))?;
                    rules.push((unhex(pattern).ok_or_else(|| bad(line))?, how, accept));
                }
                ["scheme", word] => schemes.push(unhex(word).ok_or_else(|| bad(line))?),
                [part, word] => {
                    let at = ["prefix", "assign", "whole", "space"].iter().position(|p| p == part);
                    let word = unhex(word).ok_or_else(|| bad(line))?;
                    words[at.ok_or_else(|| bad(line))?].push(word.into_bytes());
                }
                _ => return Err(bad(line)),
            }
        }
        let [prefixes, assignments, whole, space] = &words;
        let triggers = Triggers::new(prefixes, assignments, whole, space);
        Masker::new(triggers, &rules, schemes, "sha256:".into(), "[masked]".into())
    }

    fn is_mask(&self, text: &str) -> bool {
        text.starts_with(&self.mask_prefix) || text == self.opaque
    }

    /// `text` with every secret the rules find replaced, or None when there is none.
    /// `fingerprint` gives what replaces a `How::Fingerprint` secret.
    pub fn mask(&self, text: &str, fingerprint: &mut dyn FnMut(&str) -> String) -> Result<Option<String>, Reference> {
        if !self.triggers.suspicious(text.as_bytes()) || !self.any.is_match(text) {
            return Ok(None);
        }
        let mut current: Option<String> = None;
        for rule in &self.rules {
            let now = current.as_deref().unwrap_or(text);
            if !rule.regex.is_match(now) {
                continue;
            }
            let mut out = String::new();
            let mut last = 0;
            let mut replaced = false;
            for caps in rule.regex.captures_iter(now) {
                let whole = caps.get(0).map_or(0, |m| m.start());
                let Some(found) = (if rule.grouped { caps.get(1) } else { caps.get(0) }) else { continue };
                let secret = found.as_str();
                if secret.is_empty()
                    || self.is_mask(secret)
                    || self.is_scheme(secret)
                    || !self.accepts(rule.accept, now, whole, secret)?
                {
                    continue;
                }
                out.push_str(&now[last..found.start()]);
                match rule.how {
                    How::Fingerprint => out.push_str(&fingerprint(secret)),
                    How::Hide => out.push_str(&self.opaque),
                }
                last = found.end();
                replaced = true;
            }
            if replaced {
                out.push_str(&now[last..]);
                current = Some(out);
            }
        }
        Ok(current)
    }

    fn is_scheme(&self, word: &str) -> bool {
        let lower = word.to_lowercase();
        self.schemes.contains(&lower)
    }

    fn accepts(&self, accept: Accept, text: &str, start: usize, value: &str) -> Result<bool, Reference> {
        Ok(match accept {
            Accept::Always => true,
            Accept::HoldsASecret => holds_a_secret(text, start),
            Accept::LooksLikeACode => {
                if !value.is_ascii() {
                    return Err(Reference); // str.isdigit and str.isalpha beyond ASCII
                }
                !value.bytes().all(|b| b.is_ascii_digit()) && !value.bytes().all(|b| b.is_ascii_alphabetic())
            }
            Accept::NotASchemeWord => {
                if !value.is_ascii() {
                    return Err(Reference); // str.split's white space beyond ASCII
                }
                // str.split() with no separator: ASCII white space includes \x1c to \x1f
                let first = value
                    .split(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x1c'..='\x1f'))
                    .find(|w| !w.is_empty())
                    .unwrap_or("");
                !self.is_scheme(first)
            }
        })
    }
}

/// `redact._holds_a_secret`: the up to seven characters before the match do not end with
/// `hash` or `hashed` (after `_-. `), and the match is not the `"key":` of a key/value pair.
fn holds_a_secret(text: &str, start: usize) -> bool {
    let before = &text[..start];
    let from = before.char_indices().rev().take(7).last().map_or(start, |(i, _)| i);
    let lowered = text[from..start].to_lowercase();
    let trimmed = lowered.trim_end_matches(['_', '-', '.', ' ']);
    if trimmed.ends_with("hashed") || trimmed.ends_with("hash") {
        return false;
    }
    let quoted = before.ends_with('"');
    let next: String = text[start..].chars().take(5).collect();
    !(quoted && next.to_lowercase() == "key\":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> Masker {
        let triggers =
            Triggers::new(&[b"ghp_".to_vec()], &[b"password".to_vec(), b"token".to_vec()], &[], &[b"bearer".to_vec()]);
        let rules = vec![
            (r"\bghp_[A-Za-z0-9]{20,}".to_string(), How::Fingerprint, Accept::Always),
            (r"(?i)\b(?:bearer)[ \t]+([A-Za-z0-9._~+/=-]{8,})".to_string(), How::Fingerprint, Accept::Always),
            (
                r#"(?i)(?:password|token)["']{0,2}[ \t]{0,8}[=:][ \t]{0,8}["']?([^\s"'&,;}{\]\[\\]{3,})"#.to_string(),
                How::Hide,
                Accept::HoldsASecret,
            ),
        ];
        Masker::new(triggers, &rules, vec!["bearer".into()], "sha256:".into(), "[masked]".into()).expect("compiles")
    }

    fn fp(secret: &str) -> String {
        format!("sha256:<{}>", secret.len())
    }

    #[test]
    fn classes_are_spelled_as_re2_reads_them() {
        assert_eq!(translate(r"\bx\s[^\s&]").expect("ok"), r"(?-u:\b)x[\t\n\f\r ][^\t\n\f\r \&]");
        assert_eq!(translate(r"[]a[]").expect("ok"), r"[\]a\[]");
        assert!(translate(r"\Qx\E").is_err());
        assert!(translate(r"[\S]").is_err());
    }

    #[test]
    fn secrets_are_replaced_and_the_rest_kept() {
        let m = masker();
        let out = m.mask("auth Bearer abcdefgh123 then password=hunter22 ok", &mut fp).expect("native");
        assert_eq!(out.as_deref(), Some("auth Bearer sha256:<11> then password=[masked] ok"));
        assert_eq!(m.mask("nothing here", &mut fp), Ok(None));
        assert_eq!(m.mask("password=[masked]", &mut fp), Ok(None), "a mask is not masked again");
        assert_eq!(m.mask("hashed_token=abcdef", &mut fp), Ok(None), "a digest is not a secret");
    }

    #[test]
    fn the_real_table_compiles_and_masks_its_shapes() {
        let m = Masker::from_table(include_str!("../fuzz/masking_table.txt")).expect("the real table");
        let out = m.mask("curl -H 'Authorization: Bearer abcdefgh12345' https://x/?api_key=s3cr3tvalue", &mut fp);
        let out = out.expect("native").expect("masked");
        assert!(!out.contains("abcdefgh12345") && !out.contains("s3cr3tvalue"), "{out}");
    }

    #[test]
    fn unicode_white_space_is_not_re2_white_space() {
        let m = masker();
        // U+00A0 is \s for the regex crate, not for RE2: it is part of the value here
        let out = m.mask("password=ab\u{a0}cd", &mut fp).expect("native");
        assert_eq!(out.as_deref(), Some("password=[masked]"));
    }
}
