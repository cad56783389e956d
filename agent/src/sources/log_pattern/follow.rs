//! Following a file by name, like `tail -F`: new complete lines only, from
//! the end when following starts (or from the start of a file that appears
//! later), across rename rotation and truncation. Polled: robust on every
//! filesystem, and a poll reads at most a budget of bytes so a huge backlog
//! is taken in steps.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::lines::LineSplitter;
use super::rotation::{FileId, OpenFile, Step, step};

/// Bytes read at once.
const CHUNK: usize = 64 * 1024;
/// The last bytes read are kept and compared with the file at each poll,
/// to notice a truncation followed by writes past the offset.
const TAIL: usize = 64;

#[derive(Debug, Error)]
pub enum FollowError {
    #[error("cannot look at {path}: {source}")]
    Stat { path: PathBuf, source: io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// Something worth a log line that happened during a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Started reading a file at `offset`.
    Opened {
        offset: u64,
    },
    Truncated,
    /// Finished the old file and opened the new one.
    Rotated,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The budget ran out before the end of the file: poll again soon.
    pub more: bool,
    pub change: Option<Change>,
}

#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<(File, FileId)>,
    /// How far the open file has been read.
    offset: u64,
    /// The last bytes read, ending at `offset`.
    tail: Vec<u8>,
    lines: LineSplitter,
    /// Open the next file at its end: true only until the first poll
    /// finds the path or finds it missing, so history present when the
    /// agent starts is not replayed, but a file created later is read whole.
    from_end: bool,
}

impl Follower {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            file: None,
            offset: 0,
            tail: Vec::new(),
            lines: LineSplitter::default(),
            from_end: true,
        }
    }

    /// Reads what is new, at most about `budget` bytes, appending complete
    /// lines to `lines`.
    pub fn poll(
        &mut self,
        budget: usize,
        lines: &mut Vec<String>,
    ) -> Result<Progress, FollowError> {
        let at_path = match std::fs::metadata(&self.path) {
            Ok(meta) => Some((meta.dev(), meta.ino())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(FollowError::Stat {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let open = match &self.file {
            Some((file, id)) => Some(OpenFile {
                id: *id,
                size: file.metadata().map_err(|e| self.read_error(e))?.len(),
                rewritten: self.rewritten(file).map_err(|e| self.read_error(e))?,
            }),
            None => None,
        };
        let mut progress = Progress::default();
        match step(open, at_path, self.offset) {
            Step::Wait => self.from_end = false,
            Step::Open => {
                progress.change = self.open()?;
                progress.more = self.read(budget, lines)?;
            }
            Step::Read => progress.more = self.read(budget, lines)?,
            Step::Truncated => {
                lines.extend(self.lines.flush());
                self.offset = 0;
                self.tail.clear();
                progress.change = Some(Change::Truncated);
                progress.more = self.read(budget, lines)?;
            }
            Step::Rotated => {
                // The old file first: its last lines come before the new
                // file's first.
                if self.read(budget, lines)? {
                    progress.more = true;
                    return Ok(progress);
                }
                lines.extend(self.lines.flush());
                self.file = None;
                if self.open()?.is_some() {
                    progress.change = Some(Change::Rotated);
                    progress.more = self.read(budget, lines)?;
                }
            }
        }
        Ok(progress)
    }

    /// Opens the file at the path; `None` if it is gone again.
    fn open(&mut self) -> Result<Option<Change>, FollowError> {
        let open_error = |source| FollowError::Open {
            path: self.path.clone(),
            source,
        };
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(open_error(err)),
        };
        // The identity of what was opened, not of what the path names by
        // now, which may already be another file.
        let meta = file.metadata().map_err(open_error)?;
        self.offset = if self.from_end { meta.len() } else { 0 };
        self.tail.clear();
        self.from_end = false;
        self.file = Some((file, (meta.dev(), meta.ino())));
        Ok(Some(Change::Opened {
            offset: self.offset,
        }))
    }

    /// Reads the open file from the offset to its end or until `budget`
    /// runs out; true if it ran out.
    fn read(&mut self, budget: usize, lines: &mut Vec<String>) -> Result<bool, FollowError> {
        let Some((file, _)) = &self.file else {
            return Ok(false);
        };
        let mut buf = vec![0; CHUNK.min(budget.max(1))];
        let mut left = budget;
        while left > 0 {
            let want = buf.len().min(left);
            let read = match file.read_at(&mut buf[..want], self.offset) {
                Ok(0) => return Ok(false),
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.read_error(err)),
            };
            self.lines.push(&buf[..read], lines);
            self.offset += read as u64;
            self.tail
                .extend_from_slice(&buf[read.saturating_sub(TAIL)..read]);
            self.tail.drain(..self.tail.len().saturating_sub(TAIL));
            left -= read;
        }
        Ok(true)
    }

    /// Whether the bytes before the offset differ from those read there.
    fn rewritten(&self, file: &File) -> io::Result<bool> {
        if self.tail.is_empty() {
            return Ok(false);
        }
        let mut now = vec![0; self.tail.len()];
        let start = self.offset - self.tail.len() as u64;
        let mut filled = 0;
        while filled < now.len() {
            match file.read_at(&mut now[filled..], start + filled as u64) {
                // Shorter than the offset: the size says truncated already.
                Ok(0) => return Ok(false),
                Ok(read) => filled += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(now != self.tail)
    }

    fn read_error(&self, source: io::Error) -> FollowError {
        FollowError::Read {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::append;

    const BUDGET: usize = 1 << 20;

    fn poll(follower: &mut Follower) -> Vec<String> {
        let mut lines = Vec::new();
        let progress = follower.poll(BUDGET, &mut lines).unwrap();
        assert!(!progress.more);
        lines
    }

    #[test]
    fn history_present_at_start_is_skipped_and_new_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "old 1\nold 2\n");
        let mut follower = Follower::new(&log);
        let mut lines = Vec::new();
        assert_eq!(
            follower.poll(BUDGET, &mut lines).unwrap().change,
            Some(Change::Opened { offset: 12 })
        );
        assert!(lines.is_empty());
        append(&log, "new 1\nnew ");
        assert_eq!(poll(&mut follower), ["new 1"]);
        append(&log, "2\n");
        assert_eq!(poll(&mut follower), ["new 2"]);
        assert_eq!(poll(&mut follower), Vec::<String>::new());
    }

    #[test]
    fn a_file_that_appears_later_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("later.log");
        let mut follower = Follower::new(&log);
        assert_eq!(poll(&mut follower), Vec::<String>::new());
        append(&log, "first\nsecond\n");
        assert_eq!(poll(&mut follower), ["first", "second"]);
    }

    #[test]
    fn rename_rotation_finishes_the_old_file_then_reads_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "");
        let mut follower = Follower::new(&log);
        assert_eq!(poll(&mut follower), Vec::<String>::new());
        append(&log, "a\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        // Written by the program before it reopened its log.
        append(&dir.path().join("app.log.1"), "b\nunfinished");
        assert_eq!(
            poll(&mut follower),
            ["a", "b"],
            "gone from the path: read on"
        );
        append(&dir.path().join("app.log.1"), " line");
        append(&log, "c\n");
        let mut lines = Vec::new();
        let progress = follower.poll(BUDGET, &mut lines).unwrap();
        assert_eq!(progress.change, Some(Change::Rotated));
        assert_eq!(lines, ["unfinished line", "c"]);
        append(&log, "d\n");
        assert_eq!(poll(&mut follower), ["d"]);
    }

    #[test]
    fn truncation_starts_again_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "");
        let mut follower = Follower::new(&log);
        poll(&mut follower);
        append(&log, "a long first line\n");
        assert_eq!(poll(&mut follower), ["a long first line"]);
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&log)
            .unwrap();
        append(&log, "short\n");
        let mut lines = Vec::new();
        let progress = follower.poll(BUDGET, &mut lines).unwrap();
        assert_eq!(progress.change, Some(Change::Truncated));
        assert_eq!(lines, ["short"]);
    }

    #[test]
    fn a_truncation_hidden_by_new_writes_past_the_offset_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "");
        let mut follower = Follower::new(&log);
        poll(&mut follower);
        append(&log, "ERROR code=4\n");
        assert_eq!(poll(&mut follower), ["ERROR code=4"]);
        std::fs::write(&log, "ERROR code=5\nERROR code=6\n").unwrap();
        let mut lines = Vec::new();
        let progress = follower.poll(BUDGET, &mut lines).unwrap();
        assert_eq!(progress.change, Some(Change::Truncated));
        assert_eq!(lines, ["ERROR code=5", "ERROR code=6"]);
        // And reading on afterwards is unaffected.
        append(&log, "x\n");
        assert_eq!(poll(&mut follower), ["x"]);
        assert_eq!(poll(&mut follower), Vec::<String>::new());
    }

    #[test]
    fn a_backlog_is_read_a_budget_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let mut follower = Follower::new(&log);
        poll(&mut follower);
        let backlog: String = (0..1000).map(|n| format!("line {n:04}\n")).collect();
        append(&log, &backlog);
        let mut lines = Vec::new();
        let mut polls = 0;
        while follower.poll(1000, &mut lines).unwrap().more {
            polls += 1;
        }
        assert!(polls >= 10, "{polls}");
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "line 0999");
    }

    #[test]
    fn a_deleted_file_is_waited_for_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "");
        let mut follower = Follower::new(&log);
        poll(&mut follower);
        std::fs::remove_file(&log).unwrap();
        assert_eq!(poll(&mut follower), Vec::<String>::new());
        append(&log, "again\n");
        assert_eq!(poll(&mut follower), ["again"]);
    }
}
