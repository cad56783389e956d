//! What following a file by name means at each poll, decided from what is
//! open, what the path names now, and how far we have read: the `tail -F`
//! rules, without touching the filesystem.

/// A file's identity: (device, inode).
pub type FileId = (u64, u64);

/// The file being followed, as seen at this poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFile {
    pub id: FileId,
    pub size: u64,
    /// The last bytes read before the offset are no longer there: the file
    /// was truncated and written again past the offset between two polls.
    pub rewritten: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing open and nothing at the path: wait for it to appear.
    Wait,
    /// Nothing open, a file at the path: open it.
    Open,
    /// The open file is still the one to follow: read on from the offset.
    /// Also while the path names nothing: a writer may still be writing to
    /// the file renamed away, until its replacement appears.
    Read,
    /// The open file is shorter than what was read of it, or was rewritten:
    /// it was truncated (`copytruncate`), so read it again from the start.
    Truncated,
    /// The path names another file: finish reading the open one, then
    /// follow the new one from its start.
    Rotated,
}

/// `open`: the file being followed, if one is open; `at_path`: the
/// identity of the file the path names now, if any; `offset`: how far the
/// open file has been read.
pub fn step(open: Option<OpenFile>, at_path: Option<FileId>, offset: u64) -> Step {
    match (open, at_path) {
        (None, None) => Step::Wait,
        (None, Some(_)) => Step::Open,
        (Some(open), Some(now)) if open.id != now => Step::Rotated,
        (Some(open), _) if open.size < offset || open.rewritten => Step::Truncated,
        (Some(_), _) => Step::Read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: FileId = (1, 100);
    const NEW: FileId = (1, 200);

    fn open(id: FileId, size: u64) -> Option<OpenFile> {
        Some(OpenFile {
            id,
            size,
            rewritten: false,
        })
    }

    #[test]
    fn tail_f_rules() {
        assert_eq!(step(None, None, 0), Step::Wait);
        assert_eq!(step(None, Some(NEW), 0), Step::Open);
        assert_eq!(step(open(OLD, 50), Some(OLD), 50), Step::Read);
        assert_eq!(step(open(OLD, 80), Some(OLD), 50), Step::Read, "grew");
        assert_eq!(step(open(OLD, 10), Some(OLD), 50), Step::Truncated);
        assert_eq!(step(open(OLD, 0), Some(OLD), 50), Step::Truncated);
        assert_eq!(step(open(OLD, 80), Some(NEW), 50), Step::Rotated);
        // Rotated to a file on another device with the same inode number.
        assert_eq!(step(open(OLD, 80), Some((2, 100)), 50), Step::Rotated);
        // Renamed away, nothing in its place yet: keep reading the old one.
        assert_eq!(step(open(OLD, 80), None, 50), Step::Read);
        assert_eq!(step(open(OLD, 10), None, 50), Step::Truncated);
    }

    #[test]
    fn truncated_and_written_past_the_offset_between_polls() {
        let rewritten = Some(OpenFile {
            id: OLD,
            size: 80,
            rewritten: true,
        });
        assert_eq!(step(rewritten, Some(OLD), 50), Step::Truncated);
        // Rotation is the stronger signal: the old file is finished anyway.
        assert_eq!(step(rewritten, Some(NEW), 50), Step::Rotated);
    }
}
