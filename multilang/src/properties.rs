//! The Java `.properties` syntax, as `java.util.Properties.load` reads it: `key = value`,
//! `key: value` or `key value`; `#` and `!` comment lines; a trailing backslash continues a line;
//! `\t`, `\n`, `\r`, `\f`, `\uXXXX` and `\<char>` escapes. Pure: no I/O.

use thiserror::Error;

/// A properties text that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PropertiesError {
    /// A `\u` escape without four hexadecimal digits (Java rejects it too).
    #[error("line {line}: malformed \\uXXXX escape")]
    MalformedUnicodeEscape {
        /// The 1-based line where the logical line starts.
        line: usize,
    },
}

/// Parses properties text into `(key, value)` pairs in file order. A key may appear more than
/// once; as with `java.util.Properties`, the last one wins (see [`last_wins`]).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, PropertiesError> {
    let mut pairs = Vec::new();
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((index, raw)) = lines.next() {
        let first = strip_cr(raw).trim_start_matches([' ', '\t', '\x0c']);
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes continues the line,
        // and the next line's leading whitespace is dropped.
        let mut logical = String::from(first);
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => {
                    logical.push_str(strip_cr(next).trim_start_matches([' ', '\t', '\x0c']))
                }
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        let line = index + 1;
        pairs.push((unescape(key, line)?, unescape(value, line)?));
    }
    Ok(pairs)
}

/// The pairs as a map in which a repeated key keeps its last value, in first-seen order.
pub fn last_wins(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => out.push((key, value)),
        }
    }
    out
}

fn strip_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace; whitespace and one `=` or `:` after
/// the key are skipped. Both halves are still escaped.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' | '\x0c' => {
                key_end = i;
                break;
            }
            _ => {}
        }
    }
    let key = &line[..key_end];
    let mut rest = line[key_end..].trim_start_matches([' ', '\t', '\x0c']);
    if let Some(after) = rest.strip_prefix(['=', ':']) {
        rest = after.trim_start_matches([' ', '\t', '\x0c']);
    }
    (key, rest)
}

fn unescape(text: &str, line: usize) -> Result<String, PropertiesError> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or(PropertiesError::MalformedUnicodeEscape { line })?;
                // A lone surrogate half cannot be a Rust char; keep the replacement character.
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            Some(other) => out.push(other),
            // A trailing lone backslash is dropped, as Java does.
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn separators_comments_and_blank_lines() {
        let text = "# a comment\n! another\n\n  executableName = python3 app.py\nstreamName:kclpysample\n\
                    applicationName   PythonKCLSample\nempty=\nbare\nkey=a=b:c\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("executableName", "python3 app.py"),
                kv("streamName", "kclpysample"),
                kv("applicationName", "PythonKCLSample"),
                kv("empty", ""),
                kv("bare", ""),
                kv("key", "a=b:c"),
            ]
        );
    }

    #[test]
    fn continuation_lines_and_crlf() {
        let text =
            "executableName = python3 \\\n    /opt/app.py \\\r\n   --verbose\r\nnext = 1\r\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("executableName", "python3 /opt/app.py --verbose"),
                kv("next", "1"),
            ]
        );
        // An even number of backslashes is an escaped backslash, not a continuation.
        assert_eq!(
            pairs("path = C:\\\\\nother = 2"),
            vec![kv("path", "C:\\"), kv("other", "2")]
        );
        // A continuation at the end of the text ends the value.
        assert_eq!(pairs("k = v\\"), vec![kv("k", "v")]);
    }

    #[test]
    fn escapes() {
        assert_eq!(
            pairs("a\\ key\\=x = tab\\there \\u0041\\u00e9 \\#not-a-comment"),
            vec![kv("a key=x", "tab\there Aé #not-a-comment")]
        );
        assert_eq!(
            parse("k = \\u12"),
            Err(PropertiesError::MalformedUnicodeEscape { line: 1 })
        );
        assert_eq!(
            parse("a = 1\n\nk = \\uZZZZ"),
            Err(PropertiesError::MalformedUnicodeEscape { line: 3 })
        );
    }

    #[test]
    fn a_comment_marker_inside_a_value_is_kept() {
        assert_eq!(
            pairs("endpoint = http://localhost:4567 # not a comment"),
            vec![kv("endpoint", "http://localhost:4567 # not a comment")]
        );
    }

    #[test]
    fn the_last_repeated_key_wins() {
        assert_eq!(
            last_wins(pairs("a = 1\nb = 2\na = 3")),
            vec![kv("a", "3"), kv("b", "2")]
        );
    }
}
