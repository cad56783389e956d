//! File changes as events: each `[[watch]]` path (a file, or a directory's
//! entries) is watched with inotify; changes to one path within
//! `debounce_ms` make one `host.file.changed` event, so an editor's
//! save-rename-chmod dance or a log burst is one event, not dozens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use levee_common::agent_config::{AgentConfig, FileWatch};
use levee_common::event::types::FILE_CHANGED;
use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Source, SourceContext, SourceError, SourceRun};

fn change_of(kind: &EventKind) -> Option<&'static str> {
    match kind {
        EventKind::Create(_) => Some("created"),
        EventKind::Modify(_) => Some("modified"),
        EventKind::Remove(_) => Some("removed"),
        _ => None,
    }
}

/// Every `[[watch]]` path, watched by one inotify instance.
pub struct FileWatcher {
    pub watches: Vec<FileWatch>,
}

/// One watcher for all `[[watch]]`es, none without any.
pub fn from_config(config: &AgentConfig) -> Result<Vec<Box<dyn Source>>, SourceError> {
    if config.watches.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Box::new(FileWatcher {
        watches: config.watches.clone(),
    })])
}

impl Source for FileWatcher {
    fn run(self: Box<Self>, context: SourceContext, shutdown: CancellationToken) -> SourceRun {
        Box::pin(run(self.watches, context, shutdown))
    }
}

/// Watches `watches` until `shutdown`. A path that cannot be watched is
/// logged and skipped; the others go on.
async fn run(watches: Vec<FileWatch>, context: SourceContext, shutdown: CancellationToken) {
    if watches.is_empty() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = match notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    }) {
        Ok(watcher) => watcher,
        Err(err) => {
            warn!(error = %err, "cannot watch files");
            return;
        }
    };
    let debounce =
        Duration::from_millis(watches.iter().map(|w| w.debounce_ms).max().unwrap_or(200));
    for watch in &watches {
        match watcher.watch(&watch.path, RecursiveMode::NonRecursive) {
            Ok(()) => info!(path = %watch.path.display(), "watching for file changes"),
            Err(err) => warn!(path = %watch.path.display(), error = %err, "cannot watch this path"),
        }
    }
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = rx.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        // Gather what else changes within the window, then report each
        // path once with its last change.
        let mut changed: BTreeMap<PathBuf, &'static str> = BTreeMap::new();
        let mut note = |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                if let Some(change) = change_of(&event.kind) {
                    for path in event.paths {
                        changed.insert(path, change);
                    }
                }
            }
            Err(err) => warn!(error = %err, "file watch error"),
        };
        note(first);
        let window = tokio::time::sleep(debounce);
        tokio::pin!(window);
        loop {
            tokio::select! {
                _ = &mut window => break,
                event = rx.recv() => match event {
                    Some(event) => note(event),
                    None => break,
                },
            }
        }
        for (path, change) in changed {
            let subject = path.display().to_string();
            let data = json!({ "path": subject, "change": change });
            if let Err(err) = context.record(FILE_CHANGED, &subject, data).await {
                warn!(error = %err, "could not record a file change");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fixture, wait_until};

    fn changes(outbox: &crate::outbox::Outbox) -> Vec<serde_json::Value> {
        outbox
            .read_after(None, 1000)
            .unwrap()
            .into_iter()
            .filter(|event| event.r#type == FILE_CHANGED)
            .map(|event| serde_json::from_str(&event.data_json).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_burst_of_writes_to_one_file_is_one_event_per_window() {
        let fixture = fixture();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.conf");
        std::fs::write(&file, "a").unwrap();
        let stop = CancellationToken::new();
        let watches = vec![FileWatch {
            path: dir.path().to_owned(),
            debounce_ms: 300,
        }];
        let task = tokio::spawn(run(watches, fixture.source_context(), stop.clone()));
        // The watch is set up asynchronously: write until it is seen.
        wait_until("the first change to be seen", || {
            std::fs::write(&file, "b").unwrap();
            !changes(&fixture.outbox).is_empty()
        })
        .await;
        let seen = changes(&fixture.outbox).len();
        for n in 0..20 {
            std::fs::write(&file, format!("burst {n}")).unwrap();
        }
        wait_until("the burst to be reported", || {
            changes(&fixture.outbox).len() > seen
        })
        .await;
        let all = changes(&fixture.outbox);
        assert!(all.len() - seen <= 2, "20 writes in one window: {all:#?}");
        assert_eq!(all.last().unwrap()["path"], file.display().to_string());
        assert_eq!(all.last().unwrap()["change"], "modified");
        std::fs::remove_file(&file).unwrap();
        wait_until("the removal", || {
            changes(&fixture.outbox)
                .last()
                .is_some_and(|c| c["change"] == "removed")
        })
        .await;
        stop.cancel();
        task.await.unwrap();
    }
}
