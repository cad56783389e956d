//! Printing results: a table for people, JSON for programs. Every cell
//! is escaped for the terminal (`terminal::escape`): a value from a peer
//! cannot add a row or reach the terminal as a control sequence.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

use super::terminal::escape;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

/// Something printable as one table row or one JSON object.
pub trait Row {
    const HEADERS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
    fn json(&self) -> Value;
}

/// Prints rows in the chosen format to stdout.
pub fn print_rows<R: Row>(rows: &[R], format: OutputFormat, empty_hint: &str) {
    match format {
        OutputFormat::Json => {
            let array = Value::Array(rows.iter().map(Row::json).collect());
            out!(
                "{}",
                super::json_output::to_json(&array).unwrap_or_else(|_| "[]".into())
            );
        }
        OutputFormat::Table if rows.is_empty() => out!("{empty_hint}"),
        OutputFormat::Table => out!("{}", table(rows)),
    }
}

/// Rows as a table, every cell escaped for the terminal.
fn table<R: Row>(rows: &[R]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(R::HEADERS.to_vec());
    for row in rows {
        table.add_row(row.cells().iter().map(|cell| escape(cell).into_owned()));
    }
    table
}

/// A list for a table cell: the items joined by `separator`, or `-`.
pub fn listed(items: &[String], separator: &str) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(separator)
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC, or `-` for none.
pub fn timestamp(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".into();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Hostile(&'static str);

    impl Row for Hostile {
        const HEADERS: &'static [&'static str] = &["TYPE", "SUBJECT"];
        fn cells(&self) -> Vec<String> {
            vec![self.0.into(), "web".into()]
        }
        fn json(&self) -> Value {
            Value::Null
        }
    }

    #[test]
    fn a_cell_can_neither_add_a_row_nor_reach_the_terminal_raw() {
        let rows = [
            Hostile("app.x\x1b[2J\n│ fake │ row │"),
            Hostile("ok\u{202e}gpj.exe\r"),
        ];
        let one = table(&rows[..1]).to_string();
        let two = table(&rows).to_string();
        assert_eq!(
            two.lines().count(),
            one.lines().count() + 1,
            "one row per value:\n{two}"
        );
        assert!(!two.contains(['\x1b', '\r', '\u{202e}']), "{two:?}");
        assert!(two.contains("app.x\\x1b[2J\\n│ fake │ row │"), "{two}");
        assert!(two.contains("ok\\u{202e}gpj.exe\\r"), "{two}");
    }

    #[test]
    fn timestamps_render_as_utc() {
        assert_eq!(timestamp(0), "-");
        assert_eq!(timestamp(1_000), "1970-01-01T00:00:01Z");
        assert_eq!(timestamp(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
