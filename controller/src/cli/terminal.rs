//! Text for a terminal. Event types, subjects, data, agent names, rule
//! outcomes and errors come from agents and webhooks, that is from peers
//! that may be hostile: printed raw, an escape sequence in them could move
//! the cursor, recolour or clear the terminal, and a newline could add a
//! table row or a line that looks like ours. Everything the CLI prints for
//! people goes through [`escape`]: table cells in `output::print_rows`,
//! lines through [`print_line`] and [`eprint_line`], errors through
//! `client::describe` and `main`. JSON output needs none of this.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` could act on a terminal rather than be shown: C0 controls
/// (newline and tab included), DEL, C1 controls, the bidirectional
/// formatting characters (which reorder what follows them, as U+202E
/// does) and the Unicode line and paragraph separators.
pub fn acts_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every character that [`acts_on_terminal`] shown escaped,
/// visibly and on one line: `\n`, `\r`, `\t`, `\x1b` for the other ASCII
/// controls, `\u{202e}` for the rest. Text without any is returned as is.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_except(text, |_| false)
}

/// As [`escape`], but keeps line breaks: for text the CLI itself put on
/// several lines (every problem of a spec on its own line) into which
/// peer-supplied text was already escaped.
pub fn escape_keeping_lines(text: &str) -> Cow<'_, str> {
    escape_except(text, |c| c == '\n')
}

/// Prints one line to stdout, escaped.
pub fn print_line(line: &str) {
    out!("{}", escape(line));
}

/// Prints one line to stderr, escaped.
pub fn eprint_line(line: &str) {
    eprintln!("{}", escape(line));
}

fn escape_except(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let needs = |c: char| acts_on_terminal(c) && !keep(c);
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs(c) {
            escaped.push(c);
            continue;
        }
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            // Writing to a String cannot fail.
            c if c.is_ascii() => {
                let _ = write!(escaped, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(escaped, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn controls_are_shown_escaped() {
        for (raw, shown) in [
            ("app.load", "app.load"),
            ("\x1b[2J", "\\x1b[2J"),
            ("a\nb\r\tc", "a\\nb\\r\\tc"),
            ("\0\x07\x7f", "\\x00\\x07\\x7f"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("\u{2066}x\u{2069}\u{200f}", "\\u{2066}x\\u{2069}\\u{200f}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("café ✓ 日本", "café ✓ 日本"),
        ] {
            assert_eq!(escape(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn text_without_controls_is_not_copied() {
        assert!(matches!(escape("web (subject web)"), Cow::Borrowed(_)));
    }

    #[test]
    fn line_breaks_can_be_kept_but_nothing_else() {
        assert_eq!(
            escape_keeping_lines("a.yaml:1:1: bad\nb.yaml:2:3: \x1b[31mred\r"),
            "a.yaml:1:1: bad\nb.yaml:2:3: \\x1b[31mred\\r"
        );
    }

    proptest! {
        #[test]
        fn escaped_text_holds_no_character_that_acts_on_a_terminal(text in any::<String>()) {
            let escaped = escape(&text);
            prop_assert!(!escaped.chars().any(acts_on_terminal), "{:?}", escaped);
            prop_assert!(!escaped.chars().any(char::is_control), "{:?}", escaped);
            // Everything else is kept, in order.
            let mut shown = escaped.chars();
            for c in text.chars().filter(|c| !acts_on_terminal(*c)) {
                prop_assert!(shown.any(|s| s == c), "{:?} lost {:?}", escaped, c);
            }
        }

        #[test]
        fn text_without_controls_is_unchanged(text in "[^\\x00-\\x1f\\x7f-\\x9f\u{61c}\u{200e}\u{200f}\u{2028}-\u{202e}\u{2066}-\u{2069}]*") {
            prop_assert_eq!(escape(&text), text.as_str());
        }

        #[test]
        fn kept_lines_hold_no_other_control(text in any::<String>()) {
            let escaped = escape_keeping_lines(&text);
            prop_assert!(!escaped.chars().any(|c| c != '\n' && acts_on_terminal(c)), "{:?}", escaped);
            prop_assert_eq!(escaped.matches('\n').count(), text.matches('\n').count());
        }
    }
}
