//! A fault-injecting TCP proxy for partition tests. It forwards to one
//! controller and drops every connection, new or open, from sources it was
//! told to block: with each node dialling its peers from its own loopback
//! address, blocking by source cuts exactly the links a test names.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One proxy in front of one controller, on its own runtime thread.
pub struct FaultProxy {
    pub addr: String,
    state: Arc<Mutex<ProxyState>>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyState {
    blocked: HashSet<IpAddr>,
    /// Open connections by source, so blocking also cuts them.
    open: HashMap<IpAddr, Vec<CancellationToken>>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub fn start(target: String) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = CancellationToken::new();
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(serve(listener, target, thread_state, thread_stop));
        });
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Drops every connection from `sources`, now and until `heal`.
    pub fn block(&self, sources: &[IpAddr]) {
        let mut state = self.state.lock().unwrap();
        for source in sources {
            state.blocked.insert(*source);
            for connection in state.open.remove(source).unwrap_or_default() {
                connection.cancel();
            }
        }
    }

    pub fn heal(&self) {
        self.state.lock().unwrap().blocked.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    target: String,
    state: Arc<Mutex<ProxyState>>,
    stop: CancellationToken,
) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let (inbound, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let cancel = {
            let mut state = state.lock().unwrap();
            if state.blocked.contains(&peer.ip()) {
                continue; // dropping `inbound` closes it
            }
            let cancel = stop.child_token();
            state
                .open
                .entry(peer.ip())
                .or_default()
                .push(cancel.clone());
            cancel
        };
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = outbound.set_nodelay(true);
            let _ = inbound.set_nodelay(true);
            let mut inbound = inbound;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}
