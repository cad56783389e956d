//! Splitting bytes read from a file into complete lines. A trailing line
//! without its newline waits in the buffer for the rest, and a line longer
//! than the cap is cut, so a file with no newlines (a binary, a runaway
//! writer) cannot make the buffer grow without bound.

/// Lines longer than this are cut to it.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Debug)]
pub struct LineSplitter {
    max_line: usize,
    partial: Vec<u8>,
    /// The current line reached `max_line`: drop its bytes up to the
    /// newline.
    cutting: bool,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new(MAX_LINE_BYTES)
    }
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(1),
            partial: Vec::new(),
            cutting: false,
        }
    }

    /// Takes `bytes` and appends every line they complete to `lines`,
    /// without its `\n` (or `\r\n`).
    pub fn push(&mut self, mut bytes: &[u8], lines: &mut Vec<String>) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|byte| *byte == b'\n');
            let (piece, rest) = match newline {
                Some(at) => (&bytes[..at], &bytes[at + 1..]),
                None => (bytes, &[][..]),
            };
            if !self.cutting {
                let room = self.max_line - self.partial.len();
                self.partial
                    .extend_from_slice(&piece[..piece.len().min(room)]);
                self.cutting = piece.len() > room;
            }
            if newline.is_some() {
                lines.push(self.take());
            }
            bytes = rest;
        }
    }

    /// The buffered partial line, as a line: for when its file has ended
    /// (rotated away or truncated), so no newline will come.
    pub fn flush(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        self.cutting = false;
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8_lossy(&line).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(splitter: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut lines);
        }
        lines
    }

    #[test]
    fn a_line_split_across_reads_is_one_line_once_its_newline_comes() {
        let mut splitter = LineSplitter::default();
        assert_eq!(
            split(&mut splitter, &[b"one\ntw", b"o\r\nthr"]),
            ["one", "two"]
        );
        assert_eq!(split(&mut splitter, &[b"ee"]), Vec::<String>::new());
        assert_eq!(split(&mut splitter, &[b"\n\n"]), ["three", ""]);
        assert_eq!(splitter.flush(), None);
    }

    #[test]
    fn flushing_gives_the_partial_line() {
        let mut splitter = LineSplitter::default();
        assert_eq!(split(&mut splitter, &[b"a\nno newline"]), ["a"]);
        assert_eq!(splitter.flush().as_deref(), Some("no newline"));
        assert_eq!(splitter.flush(), None);
    }

    #[test]
    fn long_lines_are_cut_and_the_next_line_is_whole() {
        let mut splitter = LineSplitter::new(4);
        assert_eq!(
            split(&mut splitter, &[b"abcdefgh", b"ijkl", b"mn\nxy\n"]),
            ["abcd", "xy"]
        );
        // A newline-free stream keeps at most the cap buffered.
        split(&mut splitter, &[&[0u8; 100_000]]);
        assert_eq!(splitter.partial.len(), 4);
        assert_eq!(splitter.flush().unwrap().len(), 4);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let mut splitter = LineSplitter::default();
        assert_eq!(split(&mut splitter, &[b"ok \xff\n"]), ["ok \u{fffd}"]);
    }
}
