//! `run_while_leader`: jobs start with leadership, stop with it, and
//! never outlive a term.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::run_while_leader;
use crate::raft::leadership::Leadership;

/// What the job saw: `start n` and `stop n` per term.
type Journal = Arc<Mutex<Vec<String>>>;

fn journal_job(
    journal: Journal,
) -> impl FnMut(u64, CancellationToken) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    move |term, stepped_down| {
        let journal = journal.clone();
        Box::pin(async move {
            journal.lock().unwrap().push(format!("start {term}"));
            stepped_down.cancelled().await;
            journal.lock().unwrap().push(format!("stop {term}"));
        })
    }
}

async fn wait_for(journal: &Journal, entries: &[&str]) {
    let wanted: Vec<String> = entries.iter().map(|entry| entry.to_string()).collect();
    for _ in 0..1000 {
        if *journal.lock().unwrap() == wanted {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "journal is {:?}, waited for {wanted:?}",
        journal.lock().unwrap()
    );
}

#[tokio::test]
async fn a_job_runs_for_each_term_this_node_leads_and_stops_with_it() {
    let (leadership, receiver) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let journal = Journal::default();
    let runner = tokio::spawn(run_while_leader(
        "test",
        Leadership::from_watch(receiver),
        shutdown.clone(),
        journal_job(journal.clone()),
    ));
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(journal.lock().unwrap().is_empty(), "no job while following");
    leadership.send_replace(Some(3));
    wait_for(&journal, &["start 3"]).await;
    leadership.send_replace(None);
    wait_for(&journal, &["start 3", "stop 3"]).await;
    // Leading again, in a later term, and straight on into another one.
    leadership.send_replace(Some(5));
    wait_for(&journal, &["start 3", "stop 3", "start 5"]).await;
    leadership.send_replace(Some(6));
    wait_for(
        &journal,
        &["start 3", "stop 3", "start 5", "stop 5", "start 6"],
    )
    .await;
    shutdown.cancel();
    runner.await.unwrap();
    assert_eq!(
        journal.lock().unwrap().last().map(String::as_str),
        Some("stop 6"),
        "shutdown stops the running job before returning"
    );
}

#[tokio::test]
async fn a_job_that_ends_by_itself_waits_for_the_next_term() {
    let (leadership, receiver) = watch::channel(Some(1));
    let shutdown = CancellationToken::new();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let recorded = starts.clone();
    let runner = tokio::spawn(run_while_leader(
        "test",
        Leadership::from_watch(receiver),
        shutdown.clone(),
        move |term, _stepped_down| {
            recorded.lock().unwrap().push(term);
            std::future::ready(())
        },
    ));
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        *starts.lock().unwrap(),
        [1],
        "not restarted in the same term"
    );
    leadership.send_replace(Some(2));
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(*starts.lock().unwrap(), [1, 2]);
    shutdown.cancel();
    runner.await.unwrap();
}
