//! Finding where in a file a document's field is written, for errors
//! found after deserialising (which has no positions any more). A plain
//! line scan: good enough to send the reader to the right line.

/// Line and column (1-based) of `field:` inside the document whose
/// `name:` is `name`, or of that `name:` line when `field` is not found.
pub fn find(content: &str, name: &str, field: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = content.lines().collect();
    let name_line = lines.iter().position(|line| names(line, name))?;
    let is_separator = |line: &&str| line.trim_end() == "---";
    let start = lines[..name_line]
        .iter()
        .rposition(is_separator)
        .map_or(0, |at| at + 1);
    let end = lines[name_line..]
        .iter()
        .position(is_separator)
        .map_or(lines.len(), |at| name_line + at);
    let key = format!("{field}:");
    let found = (start..end).find(|at| {
        let trimmed = lines[*at].trim_start().trim_start_matches("- ");
        trimmed.starts_with(&key)
    });
    let at = found.unwrap_or(name_line);
    let column = lines[at].len() - lines[at].trim_start().len() + 1;
    Some((at + 1, column))
}

fn names(line: &str, name: &str) -> bool {
    let Some(value) = line.strip_prefix("name:") else {
        return false;
    };
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    value == name
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn finds_the_field_inside_the_named_document_only() {
        let content = "kind: Service\nname: a\nreplicas: 1\n---\nkind: Service\nname: \"b\"\nprocess:\n  argv: []\nreplicas: 0\n";
        assert_eq!(find(content, "b", "replicas"), Some((9, 1)));
        assert_eq!(find(content, "b", "argv"), Some((8, 3)));
        assert_eq!(find(content, "b", "nothing"), Some((6, 1)));
        assert_eq!(find(content, "c", "replicas"), None);
    }
}
