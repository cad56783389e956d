//! `--output json`, safe on a terminal too: serde_json escapes C0 control
//! characters in strings but writes DEL, C1 controls and direction
//! overrides as they are, and those act on a terminal. This writes them as
//! `\uXXXX` escapes, which every JSON reader decodes to the same value.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

use super::terminal::acts_on_terminal;

/// Pretty JSON of `value` with every character that acts on a terminal
/// escaped as `\uXXXX`.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, TerminalSafe(PrettyFormatter::new()));
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// Prints `value` as pretty, terminal-safe JSON.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<()> {
    out!("{}", to_json(value)?);
    Ok(())
}

struct TerminalSafe<'a>(PrettyFormatter<'a>);

impl Formatter for TerminalSafe<'_> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| acts_on_terminal(*c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// Layout newlines and indentation are the printer's own.
    fn raw_controls(printed: &str) -> Vec<char> {
        printed
            .chars()
            .filter(|c| *c != '\n' && acts_on_terminal(*c))
            .collect()
    }

    #[test]
    fn characters_that_act_on_a_terminal_are_escaped_and_read_back_the_same() {
        let value = json!({"type": "a\u{7f}b\u{9b}2J\u{202e}c\u{1b}[0m", "n": [1, 2]});
        let text = to_json(&value).unwrap();
        assert!(raw_controls(&text).is_empty(), "{text:?}");
        assert!(
            text.contains("\\u007f") && text.contains("\\u202e"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
        assert_eq!(
            to_json(&json!({"plain": "web"})).unwrap(),
            serde_json::to_string_pretty(&json!({"plain": "web"})).unwrap(),
            "plain text is printed as before"
        );
    }

    proptest! {
        #[test]
        fn any_string_prints_safe_and_reads_back_equal(text in any::<String>()) {
            let value = json!({ "s": text });
            let printed = to_json(&value).unwrap();
            prop_assert!(raw_controls(&printed).is_empty());
            prop_assert_eq!(serde_json::from_str::<Value>(&printed).unwrap(), value);
        }
    }
}
