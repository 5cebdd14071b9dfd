//! Key patterns: literal text and typed captures, as `course#{courseId}` or
//! `{day:date}#order#{orderId}`. An entity's keys are matched against them; an aggregate's keys
//! are rendered from them (and read back).
//!
//! Matching allocates nothing and never backtracks: a capture runs to the leftmost occurrence of
//! the literal after it, or to the end of the key. So `submission#{assignmentId}#{studentId}`
//! splits `submission#a1#s#1` into `a1` and `s#1`, as today's code does (`split_once('#')`).
//! `{{` and `}}` are literal braces.

use std::fmt::Write;

use chrono::NaiveDate;

/// What a capture holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaptureType {
    /// Any non-empty text.
    Id,
    /// `YYYY-MM-DD`, exactly.
    Date,
    /// An ISO 8601 date or date-time; it stands for its UTC day.
    DateTime,
}

impl CaptureType {
    /// How a capture of this type is written in a shape (the university contract writes
    /// `{YYYY-MM-DD}`).
    fn shape(self, name: &str, shape: &mut String) {
        match self {
            CaptureType::Id => {
                shape.push('{');
                shape.push_str(name);
                shape.push('}');
            }
            CaptureType::Date => shape.push_str("{YYYY-MM-DD}"),
            CaptureType::DateTime => shape.push_str("{ISO 8601 date-time}"),
        }
    }
}

/// One named capture of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capture {
    pub name: String,
    pub kind: CaptureType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(String),
    /// An index into [`Pattern::captures`].
    Capture(usize),
}

/// A parsed pattern. The default one is a placeholder for a pattern that did not parse (the
/// rules then do not load). Its fields are visible to the rules module for
/// [`super::digest`], which names every one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pattern {
    pub(super) segments: Vec<Segment>,
    pub(super) captures: Vec<Capture>,
    /// The pattern as rejection messages show it.
    pub(super) shape: String,
    /// Bytes of literal text, for sizing rendered keys.
    pub(super) literal_bytes: usize,
}

/// Why a pattern does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is `""`.
    #[error("a key cannot be empty")]
    Empty,
    /// A `{` opens a capture that no `}` closes.
    #[error("`{{` is not closed")]
    Unclosed,
    /// A single `}` outside any capture.
    #[error("`}}` closes nothing (write `}}}}` for a literal one)")]
    Stray,
    /// A capture's name, given, is not a letter or `_` followed by letters, digits or `_`
    /// (`{}`, `{1st}`).
    #[error("`{0}` is not a capture name (a letter or `_`, then letters, digits or `_`)")]
    BadName(String),
    /// A capture's type, after its `:`, is not `id`, `date` or `datetime`.
    #[error("capture `{name}` has unknown type `{kind}` (expected `id`, `date` or `datetime`)")]
    UnknownType {
        /// The capture's name.
        name: String,
        /// The type as written.
        kind: String,
    },
    /// Two captures, named, follow each other with no literal text between them: where the first
    /// ends could not be told.
    #[error("captures `{0}` and `{1}` need literal text between them")]
    Adjacent(String, String),
}

/// A piece of a pattern, as [`Pattern::parts`] gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part<'p> {
    Literal(&'p str),
    Capture(&'p Capture),
}

/// One capture's value, for rendering a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyPart<'a> {
    Text(&'a str),
    Day(NaiveDate),
}

/// How a day is written in keys: chrono's `%Y` adds a sign outside years 0 to 9999.
pub(crate) const DAY_FORMAT: &str = "%Y-%m-%d";

impl Pattern {
    pub(crate) fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let mut pattern = Pattern { segments: Vec::new(), captures: Vec::new(), shape: String::new(), literal_bytes: 0 };
        let mut literal = String::new();
        let mut rest = text;
        while let Some(next) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{").or_else(|| rest.strip_prefix("}}")) {
                literal.push(next);
                rest = after;
            } else if next == '}' {
                return Err(PatternError::Stray);
            } else if next == '{' {
                let end = rest.find('}').ok_or(PatternError::Unclosed)?;
                let capture = parse_capture(&rest[1..end])?;
                if let (true, Some(Segment::Capture(_)), Some(previous)) =
                    (literal.is_empty(), pattern.segments.last(), pattern.captures.last())
                {
                    return Err(PatternError::Adjacent(previous.name.clone(), capture.name));
                }
                pattern.push_literal(std::mem::take(&mut literal));
                capture.kind.shape(&capture.name, &mut pattern.shape);
                pattern.segments.push(Segment::Capture(pattern.captures.len()));
                pattern.captures.push(capture);
                rest = &rest[end + 1..];
            } else {
                literal.push(next);
                rest = &rest[next.len_utf8()..];
            }
        }
        pattern.push_literal(literal);
        Ok(pattern)
    }

    fn push_literal(&mut self, literal: String) {
        if literal.is_empty() {
            return;
        }
        self.shape.push_str(&literal.replace('{', "{{").replace('}', "}}"));
        self.literal_bytes += literal.len();
        self.segments.push(Segment::Literal(literal));
    }

    pub(crate) fn captures(&self) -> &[Capture] {
        &self.captures
    }

    /// The pattern as rejection messages show it: `{YYYY-MM-DD}#order#{orderId}`.
    pub(crate) fn shape(&self) -> &str {
        &self.shape
    }

    /// The literal text before the first capture (all of it for a constant pattern).
    pub(crate) fn prefix(&self) -> &str {
        match self.segments.first() {
            Some(Segment::Literal(literal)) => literal,
            _ => "",
        }
    }

    /// The pattern as a rules file writes it: `{day:date}#order#{orderId}`.
    pub(crate) fn source(&self) -> String {
        let mut text = String::new();
        for part in self.parts() {
            match part {
                Part::Literal(literal) => text.push_str(&literal.replace('{', "{{").replace('}', "}}")),
                Part::Capture(Capture { name, kind }) => {
                    let kind = match kind {
                        CaptureType::Id => "",
                        CaptureType::Date => ":date",
                        CaptureType::DateTime => ":datetime",
                    };
                    text.push_str(&format!("{{{name}{kind}}}"));
                }
            }
        }
        text
    }

    /// Its literals and captures, in order.
    pub(crate) fn parts(&self) -> impl Iterator<Item = Part<'_>> + '_ {
        self.segments.iter().map(|segment| match segment {
            Segment::Literal(literal) => Part::Literal(literal),
            Segment::Capture(index) => Part::Capture(&self.captures[*index]),
        })
    }

    /// The key itself, if the pattern has no captures.
    pub(crate) fn constant(&self) -> Option<&str> {
        self.captures.is_empty().then(|| self.prefix())
    }

    /// Splits `key` by the pattern's literals, handing each capture's text to `take`, which
    /// may refuse it (its type). False if a literal does not match, a capture is empty (an id
    /// capture may be when `empty_ids`) or `take` refuses.
    pub(crate) fn split<'k>(&self, key: &'k str, empty_ids: bool, mut take: impl FnMut(usize, &Capture, &'k str) -> bool) -> bool {
        let mut rest = key;
        let mut segments = self.segments.iter().peekable();
        while let Some(segment) = segments.next() {
            match segment {
                Segment::Literal(literal) => match rest.strip_prefix(literal.as_str()) {
                    Some(after) => rest = after,
                    None => return false,
                },
                Segment::Capture(index) => {
                    // Captures are never adjacent: one is followed by a literal or ends the key.
                    let end = match segments.peek() {
                        Some(Segment::Literal(next)) => match rest.find(next.as_str()) {
                            Some(end) => end,
                            None => return false,
                        },
                        _ => rest.len(),
                    };
                    let (text, after) = rest.split_at(end);
                    let capture = &self.captures[*index];
                    if (text.is_empty() && !(empty_ids && capture.kind == CaptureType::Id)) || !take(*index, capture, text) {
                        return false;
                    }
                    rest = after;
                }
            }
        }
        rest.is_empty()
    }

    /// The key with each capture replaced by `part(index)`; `None` if a part is missing.
    pub(crate) fn render<'a>(&self, part: impl Fn(usize) -> Option<KeyPart<'a>>) -> Option<String> {
        let mut bytes = self.literal_bytes;
        for index in 0..self.captures.len() {
            bytes += match part(index)? {
                KeyPart::Text(text) => text.len(),
                KeyPart::Day(_) => DAY_FORMAT.len() + 2,
            };
        }
        let mut key = String::with_capacity(bytes);
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => key.push_str(literal),
                Segment::Capture(index) => match part(*index)? {
                    KeyPart::Text(text) => key.push_str(text),
                    // Writing to a String cannot fail.
                    KeyPart::Day(day) => write!(key, "{}", day.format(DAY_FORMAT)).ok()?,
                },
            }
        }
        Some(key)
    }
}

fn parse_capture(inner: &str) -> Result<Capture, PatternError> {
    let (name, kind) = inner.split_once(':').unwrap_or((inner, "id"));
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|rest| rest.is_ascii_alphanumeric() || rest == '_');
    if !valid {
        return Err(PatternError::BadName(name.to_owned()));
    }
    let kind = match kind {
        "id" => CaptureType::Id,
        "date" => CaptureType::Date,
        "datetime" => CaptureType::DateTime,
        other => return Err(PatternError::UnknownType { name: name.to_owned(), kind: other.to_owned() }),
    };
    Ok(Capture { name: name.to_owned(), kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captures(pattern: &str, key: &str) -> Option<Vec<String>> {
        let pattern = Pattern::parse(pattern).unwrap();
        let mut found = Vec::new();
        pattern
            .split(key, false, |_, _, text| {
                found.push(text.to_owned());
                true
            })
            .then_some(found)
    }

    #[test]
    fn captures_run_to_the_leftmost_next_literal_and_the_last_to_the_end() {
        assert_eq!(captures("course#{courseId}", "course#c#1"), Some(vec!["c#1".into()]));
        assert_eq!(captures("submission#{a}#{s}", "submission#a1#s#1"), Some(vec!["a1".into(), "s#1".into()]));
        assert_eq!(captures("{day:date}#order#{id}", "2026-03-01#order#o1"), Some(vec!["2026-03-01".into(), "o1".into()]));
        assert_eq!(captures("metadata", "metadata"), Some(vec![]));
        assert_eq!(captures("{a}-end", "x-end"), Some(vec!["x".into()]));
    }

    #[test]
    fn a_key_without_the_shape_does_not_match() {
        for (pattern, key) in [
            ("course#{courseId}", "course#"),
            ("course#{courseId}", "user#u1"),
            ("submission#{a}#{s}", "submission##s1"),
            ("submission#{a}#{s}", "submission#a1#"),
            ("submission#{a}#{s}", "submission#a1"),
            ("metadata", "metadata2"),
            ("{a}-end", "x-end-more"),
        ] {
            assert_eq!(captures(pattern, key), None, "{pattern} {key}");
        }
        let pattern = Pattern::parse("stats#assignment#{assignmentId}").unwrap();
        assert!(pattern.split("stats#assignment#", true, |_, _, _| true), "an empty id, when allowed");
        assert!(!pattern.split("stats#assignment#", false, |_, _, _| true));
    }

    #[test]
    fn shapes_are_the_pattern_with_dates_as_spec_writes_them() {
        let shape = |text: &str| Pattern::parse(text).unwrap().shape().to_owned();
        assert_eq!(shape("{day:date}#order#{orderId}"), "{YYYY-MM-DD}#order#{orderId}");
        assert_eq!(shape("MSG#{sentAt:datetime}"), "MSG#{ISO 8601 date-time}");
        assert_eq!(shape("course#{courseId:id}"), "course#{courseId}");
        assert_eq!(shape("a{{b}}#{c}"), "a{{b}}#{c}");
        assert_eq!(Pattern::parse("a{{b}}").unwrap().constant(), Some("a{b}"));
    }

    #[test]
    fn renders_keys_from_parts() {
        let pattern = Pattern::parse("day#{day:date}").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(pattern.render(|_| Some(KeyPart::Day(day))).as_deref(), Some("day#2026-03-01"));
        let far = NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap();
        assert_eq!(pattern.render(|_| Some(KeyPart::Day(far))).as_deref(), Some("day#+10000-01-01"));
        let pattern = Pattern::parse("stats#{a}#{b}").unwrap();
        assert_eq!(pattern.render(|index| Some(KeyPart::Text(["x", "y"][index]))).as_deref(), Some("stats#x#y"));
        assert_eq!(pattern.render(|index| (index == 0).then_some(KeyPart::Text("x"))), None);
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        for (text, error) in [
            ("", PatternError::Empty),
            ("course#{courseId", PatternError::Unclosed),
            ("course#}", PatternError::Stray),
            ("course#{}", PatternError::BadName(String::new())),
            ("course#{9a}", PatternError::BadName("9a".into())),
            ("course#{a-b}", PatternError::BadName("a-b".into())),
            ("x#{d:day}", PatternError::UnknownType { name: "d".into(), kind: "day".into() }),
            ("{a}{b}", PatternError::Adjacent("a".into(), "b".into())),
        ] {
            assert_eq!(Pattern::parse(text), Err(error), "{text}");
        }
        assert!(Pattern::parse("{a}{{{b}").is_ok(), "a literal brace separates captures");
    }
}
