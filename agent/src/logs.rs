//! Workload output: each of stdout and stderr is piped into a log file that
//! is rotated (`stdout.log` → `stdout.log.1` → …) when it would pass
//! `max_bytes`, keeping `keep` rotated files, so a chatty workload cannot
//! fill the disk.
//!
//! The pipe is drained by an async task into a bounded queue and written by
//! a thread of its own: a slow disk makes the agent drop output (and say so
//! in the log) rather than block the workload on a full pipe.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use levee_common::agent_config::LogsConfig;
use levee_common::private_files;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::warn;

/// Chunks queued between a pipe and its writer thread.
const QUEUE_CHUNKS: usize = 128;
const CHUNK_BYTES: usize = 8192;
/// Output held for a slow disk, queued or waiting for room in the queue,
/// before more is dropped.
const BUDGET_BYTES: u64 = 1024 * 1024;

/// A log file that rotates itself.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` for appending, continuing an existing file; owner-only
    /// (a workload may print secrets), whatever the umask.
    pub fn open(path: &Path, limits: &LogsConfig) -> std::io::Result<Self> {
        let file = open_private(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            max_bytes: limits.max_bytes.max(1),
            keep: limits.keep,
            file,
            size,
        })
    }

    /// Appends `bytes`, rotating whenever the current file is full, so no
    /// file grows past `max_bytes`.
    pub fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.size >= self.max_bytes {
                self.rotate()?;
            }
            let room = (self.max_bytes - self.size) as usize;
            let (now, rest) = bytes.split_at(bytes.len().min(room));
            self.file.write_all(now)?;
            self.size += now.len() as u64;
            bytes = rest;
        }
        Ok(())
    }

    /// `.keep` is dropped, `.n` becomes `.n+1`, the current file `.1`.
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&numbered(self.keep))?;
            for n in (1..self.keep).rev() {
                match fs::rename(numbered(n), numbered(n + 1)) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                    _ => {}
                }
            }
            fs::rename(&self.path, numbered(1))?;
        }
        self.file = open_private(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_private(path: &Path) -> std::io::Result<File> {
    private_files::open(path, OpenOptions::new().append(true)).map_err(std::io::Error::other)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Copies `stream` into the rotating file at `path` until the stream ends
/// (the workload and everything it started closed the pipe).
pub fn capture(
    stream: impl AsyncRead + Unpin + Send + 'static,
    path: &Path,
    limits: &LogsConfig,
) -> std::io::Result<()> {
    let mut file = RotatingFile::open(path, limits)?;
    let (chunks_tx, mut chunks_rx) = mpsc::channel::<Vec<u8>>(QUEUE_CHUNKS);
    let dropped = Arc::new(AtomicU64::new(0));
    let writer_dropped = dropped.clone();
    // Bytes sent to the writer and not yet written.
    let in_flight = Arc::new(AtomicU64::new(0));
    let writer_in_flight = in_flight.clone();
    let name = path.display().to_string();
    std::thread::Builder::new()
        .name("levee-log".into())
        .spawn(move || {
            let mut failing = false;
            while let Some(chunk) = chunks_rx.blocking_recv() {
                let lost = writer_dropped.swap(0, Ordering::Relaxed);
                let mut result = Ok(());
                if lost > 0 {
                    let note = format!(
                        "\n[levee-agent: {lost} bytes of output dropped: the log disk was too slow]\n"
                    );
                    result = file.write(note.as_bytes());
                }
                result = result.and_then(|()| file.write(&chunk));
                writer_in_flight.fetch_sub(chunk.len() as u64, Ordering::Relaxed);
                match result {
                    // Warn once per run of failures, not once per chunk.
                    Err(err) if !failing => {
                        warn!(log = %name, error = %err, "cannot write workload output; dropping it");
                        failing = true;
                    }
                    Err(_) => {}
                    Ok(()) => failing = false,
                }
            }
        })?;
    tokio::spawn(async move {
        let mut stream = stream;
        // Output read while the queue was full, sent as one chunk as soon
        // as there is room: short lines are not dropped just because the
        // writer thread was not scheduled for a moment.
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let mut chunk = vec![0u8; CHUNK_BYTES];
            let read = if pending.is_empty() {
                stream.read(&mut chunk).await
            } else {
                tokio::select! {
                    permit = chunks_tx.reserve() => {
                        let held = std::mem::take(&mut pending);
                        if let Ok(permit) = permit {
                            in_flight.fetch_add(held.len() as u64, Ordering::Relaxed);
                            permit.send(held);
                        }
                        continue;
                    }
                    read = stream.read(&mut chunk) => read,
                }
            };
            let read = match read {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            chunk.truncate(read);
            let held = in_flight.load(Ordering::Relaxed) + pending.len() as u64;
            if held + read as u64 > BUDGET_BYTES {
                // Never wait for the disk: past the budget, output is
                // dropped and counted.
                dropped.fetch_add(read as u64, Ordering::Relaxed);
            } else if pending.is_empty() {
                in_flight.fetch_add(read as u64, Ordering::Relaxed);
                if let Err(TrySendError::Full(chunk)) = chunks_tx.try_send(chunk) {
                    in_flight.fetch_sub(read as u64, Ordering::Relaxed);
                    pending = chunk;
                }
            } else {
                pending.extend_from_slice(&chunk);
            }
        }
        // The workload is gone: what is held may wait for the disk now.
        if !pending.is_empty() {
            in_flight.fetch_add(pending.len() as u64, Ordering::Relaxed);
            let _ = chunks_tx.send(pending).await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(path: &Path, n: u32) -> PathBuf {
        PathBuf::from(format!("{}.{n}", path.display()))
    }

    #[test]
    fn files_rotate_at_the_limit_and_only_keep_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let limits = LogsConfig {
            max_bytes: 100,
            keep: 2,
        };
        let mut file = RotatingFile::open(&path, &limits).unwrap();
        // 0..=9 as ten blocks of 45 bytes: 450 bytes, five files' worth.
        for block in 0..10u8 {
            file.write(&[b'0' + block; 45]).unwrap();
        }
        for path in [&path, &numbered(&path, 1), &numbered(&path, 2)] {
            assert!(fs::metadata(path).unwrap().len() <= 100, "{path:?}");
        }
        assert!(!numbered(&path, 3).exists(), "only two rotated files kept");
        for path in [&path, &numbered(&path, 1), &numbered(&path, 2)] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{path:?}: a workload may print secrets");
        }
        // Bytes 400..450 are current, 300..400 in .1, 200..300 in .2.
        let current = fs::read_to_string(&path).unwrap();
        assert_eq!(current, format!("{}{}", "8".repeat(5), "9".repeat(45)));
        let previous = fs::read_to_string(numbered(&path, 1)).unwrap();
        assert_eq!(
            previous,
            format!("{}{}{}", "6".repeat(15), "7".repeat(45), "8".repeat(40))
        );

        // A reopened file continues where it was, and rotates on time.
        let mut again = RotatingFile::open(&path, &limits).unwrap();
        again.write(&[b'x'; 60]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "x".repeat(10));
        assert!(
            fs::read_to_string(numbered(&path, 1))
                .unwrap()
                .ends_with('x')
        );
    }

    #[test]
    fn with_keep_zero_the_full_file_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr.log");
        let limits = LogsConfig {
            max_bytes: 10,
            keep: 0,
        };
        let mut file = RotatingFile::open(&path, &limits).unwrap();
        file.write(b"0123456789abc").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "abc");
        assert!(!numbered(&path, 1).exists());
    }

    #[tokio::test]
    async fn a_process_output_is_captured_and_rotated_until_its_pipe_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let limits = LogsConfig {
            max_bytes: 1000,
            keep: 2,
        };
        let mut child = tokio::process::Command::new("/bin/sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        capture(child.stdout.take().unwrap(), &path, &limits).unwrap();
        assert!(child.wait().await.unwrap().success());
        crate::testing::wait_until("the last line in stdout.log", || {
            fs::read_to_string(&path).is_ok_and(|log| log.ends_with("line-299\n"))
        })
        .await;
        assert!(numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists());
        for path in [&path, &numbered(&path, 1), &numbered(&path, 2)] {
            assert!(fs::metadata(path).unwrap().len() <= 1000, "{path:?}");
        }
    }
}
