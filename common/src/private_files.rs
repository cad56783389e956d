//! Owner-only files and directories: the stores, keys, tokens and logs the
//! controller, the agent and `levee dev` keep. Modes are set explicitly at
//! creation and again on what already exists, so they are 0700 and 0600
//! whatever the umask, and a file or directory left looser by an earlier
//! release is tightened, with a warning, at the next start.
//!
//! The process umask is left alone: workloads inherit it, and files the
//! agent writes for a spec carry the spec's declared mode.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::warn;

/// Directories: the owner only.
pub const DIR_MODE: u32 = 0o700;
/// Files: the owner only, and no execute bit.
pub const FILE_MODE: u32 = 0o600;
/// Bits that let group or others in.
const GROUP_AND_OTHERS: u32 = 0o077;

#[derive(Debug, Error)]
pub enum PrivateError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is mode {mode:o}, so group and others can reach what Levee keeps there, and it holds files other than `{marker}`: it is left as it is; run `chmod 700 {path}` if it is Levee's, or choose another directory"
    )]
    Shared {
        path: PathBuf,
        mode: u32,
        marker: String,
    },
}

/// Makes `dir` the owner-only home of a store whose file is `marker`:
/// created 0700, with any missing parents, if it does not exist. An
/// existing one that lets group or others in is tightened to 0700 when it
/// is clearly Levee's (it holds `marker`, left by an earlier start, or
/// nothing yet) and refused otherwise: a `data_dir` pointed at a shared
/// directory by mistake (`/var/lib`) must not lock its other users out.
pub fn prepare_dir(dir: &Path, marker: &str) -> Result<(), PrivateError> {
    let Some(mode) = existing_mode(dir)? else {
        return create_dir(dir);
    };
    if mode & GROUP_AND_OTHERS == 0 {
        return Ok(());
    }
    let empty = fs::read_dir(dir).map_err(io("read", dir))?.next().is_none();
    if !empty && !dir.join(marker).exists() {
        return Err(PrivateError::Shared {
            path: dir.to_owned(),
            mode,
            marker: marker.to_owned(),
        });
    }
    tighten(dir, mode, DIR_MODE)
}

/// A directory that is Levee's by its name inside an owner-only one (the
/// agent's `logs/`): created 0700 if missing, tightened to 0700 if looser.
pub fn ensure_dir(dir: &Path) -> Result<(), PrivateError> {
    match existing_mode(dir)? {
        None => create_dir(dir),
        Some(mode) if mode & GROUP_AND_OTHERS != 0 => tighten(dir, mode, DIR_MODE),
        Some(_) => Ok(()),
    }
}

/// A file that is Levee's by its name (a store): created empty and 0600
/// if missing, so it is never readable by others even for a moment;
/// tightened to 0600 if looser. redb initialises an empty file.
pub fn ensure_file(path: &Path) -> Result<(), PrivateError> {
    let file = open(path, OpenOptions::new().write(true))?;
    drop(file);
    Ok(())
}

/// Opens `path` with `options` (which must allow creating it, or name an
/// existing file) as an owner-only file: created 0600, an existing one
/// tightened to 0600. For files written as they go (workload logs).
pub fn open(path: &Path, options: &mut OpenOptions) -> Result<File, PrivateError> {
    let file = options
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io("open", path))?;
    let mode = file
        .metadata()
        .map_err(io("read the mode of", path))?
        .permissions()
        .mode()
        & 0o7777;
    if mode != FILE_MODE {
        // Also right after creation: a umask such as 0277 could have
        // taken the owner's write bit.
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(io("set the mode of", path))?;
        if mode & GROUP_AND_OTHERS != 0 {
            warn_tightened(path, mode, FILE_MODE);
        }
    }
    Ok(file)
}

/// Writes `content` to `path`, replacing what was there, as an owner-only
/// file (a token, a key): 0600 whatever the umask and whatever mode an
/// existing file had.
pub fn write(path: &Path, content: &[u8]) -> Result<(), PrivateError> {
    let mut file = open(path, OpenOptions::new().write(true).truncate(true))?;
    file.write_all(content).map_err(io("write", path))?;
    file.sync_all().map_err(io("sync", path))
}

/// The permission bits of `path`, or `None` if it does not exist.
fn existing_mode(path: &Path) -> Result<Option<u32>, PrivateError> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata.permissions().mode() & 0o7777)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io("read the mode of", path)(err)),
    }
}

fn create_dir(dir: &Path) -> Result<(), PrivateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io("create", dir))?;
    // Explicitly, as the umask applies to the mode given at creation.
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(io("set the mode of", dir))
}

fn tighten(path: &Path, from: u32, to: u32) -> Result<(), PrivateError> {
    fs::set_permissions(path, fs::Permissions::from_mode(to))
        .map_err(io("set the mode of", path))?;
    warn_tightened(path, from, to);
    Ok(())
}

fn warn_tightened(path: &Path, from: u32, to: u32) {
    warn!(
        path = %path.display(),
        was = format!("{from:o}"),
        now = format!("{to:o}"),
        "group and others could reach this; made it owner-only"
    );
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PrivateError {
    let path = path.to_owned();
    move |source| PrivateError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn directories_are_created_owner_only_with_their_parents() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("a/b/data");
        prepare_dir(&dir, "store.redb").unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&temp.path().join("a")) & GROUP_AND_OTHERS, 0);
        ensure_dir(&dir.join("logs")).unwrap();
        assert_eq!(mode(&dir.join("logs")), DIR_MODE);
    }

    #[test]
    fn a_loose_directory_is_tightened_when_it_is_levees() {
        let temp = tempfile::tempdir().unwrap();
        let empty = temp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        set_mode(&empty, 0o755);
        prepare_dir(&empty, "store.redb").unwrap();
        assert_eq!(mode(&empty), DIR_MODE);

        let earlier = temp.path().join("earlier");
        fs::create_dir(&earlier).unwrap();
        fs::write(earlier.join("store.redb"), "").unwrap();
        fs::write(earlier.join("api.addr"), "").unwrap();
        set_mode(&earlier, 0o750);
        prepare_dir(&earlier, "store.redb").unwrap();
        assert_eq!(mode(&earlier), DIR_MODE);

        let logs = earlier.join("logs");
        fs::create_dir(&logs).unwrap();
        set_mode(&logs, 0o755);
        ensure_dir(&logs).unwrap();
        assert_eq!(mode(&logs), DIR_MODE);
    }

    #[test]
    fn a_loose_directory_holding_other_files_is_refused_and_left_alone() {
        let temp = tempfile::tempdir().unwrap();
        let shared = temp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::write(shared.join("someone-elses"), "").unwrap();
        set_mode(&shared, 0o755);
        let err = prepare_dir(&shared, "store.redb").unwrap_err();
        assert!(
            matches!(err, PrivateError::Shared { mode: 0o755, .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("is mode 755") && text.contains("chmod 700"),
            "{text}"
        );
        assert_eq!(mode(&shared), 0o755, "left as it was");

        // Owner-only already: nothing to do, whatever it holds.
        set_mode(&shared, 0o700);
        prepare_dir(&shared, "store.redb").unwrap();
    }

    #[test]
    fn files_are_owner_only_new_or_old() {
        let temp = tempfile::tempdir().unwrap();
        let store = temp.path().join("store.redb");
        ensure_file(&store).unwrap();
        assert_eq!(mode(&store), FILE_MODE);
        assert_eq!(fs::metadata(&store).unwrap().len(), 0);

        let token = temp.path().join("webhook.token");
        fs::write(&token, "old").unwrap();
        set_mode(&token, 0o644);
        write(&token, b"new").unwrap();
        assert_eq!(mode(&token), FILE_MODE);
        assert_eq!(fs::read_to_string(&token).unwrap(), "new");

        let log = temp.path().join("stdout.log");
        fs::write(&log, "kept\n").unwrap();
        set_mode(&log, 0o664);
        let mut file = open(&log, OpenOptions::new().append(true)).unwrap();
        file.write_all(b"more\n").unwrap();
        assert_eq!(mode(&log), FILE_MODE);
        assert_eq!(fs::read_to_string(&log).unwrap(), "kept\nmore\n");
    }
}
