//! The Prometheus text exposition format (version 0.0.4), for the
//! controllers' and agents' `/metrics`. Values are read from the state at
//! scrape time, so a writer of a few families is all either side needs.

use std::fmt::Write as _;

/// The `Content-Type` of a scrape response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Builds one scrape response, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// One unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help, [(Vec::<(&str, &str)>::new(), value)])
    }

    /// A family: `name` with its help, and one sample per label set.
    pub fn family<'a, L>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) -> &mut Self
    where
        L: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let labels: Vec<String> = labels
                .into_iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            let _ = writeln!(self.text, "{name}{labels} {}", number(value));
        }
        self
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_in_the_text_format() {
        let mut exposition = Exposition::new();
        exposition
            .single("levee_up", Kind::Gauge, "Whether it runs.", 1.0)
            .family(
                "levee_tasks",
                Kind::Gauge,
                "Tasks by state.",
                [
                    (vec![("state", "pending")], 3.0),
                    (vec![("state", "failed")], 0.5),
                ],
            );
        assert_eq!(
            exposition.finish(),
            "# HELP levee_up Whether it runs.\n# TYPE levee_up gauge\nlevee_up 1\n\
             # HELP levee_tasks Tasks by state.\n# TYPE levee_tasks gauge\n\
             levee_tasks{state=\"pending\"} 3\nlevee_tasks{state=\"failed\"} 0.5\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut exposition = Exposition::new();
        exposition.family(
            "x",
            Kind::Counter,
            "line one\nline \\ two",
            [(vec![("rule", "a\"b\\c\nd")], f64::INFINITY)],
        );
        let text = exposition.finish();
        assert!(
            text.contains("# HELP x line one\\nline \\\\ two\n"),
            "{text}"
        );
        assert!(
            text.contains("x{rule=\"a\\\"b\\\\c\\nd\"} +Inf\n"),
            "{text}"
        );
    }
}
