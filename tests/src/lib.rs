//! A harness for whole-system tests: real `levee` and `levee-agent`
//! processes on 127.0.0.1, real certificates, real files.
//!
//! Every process a test starts is owned by a guard that ends it when the
//! test ends, pass or fail. Waits are on conditions, with a timeout that
//! names what was awaited.

pub mod cluster;
pub mod hostile;
pub mod http_sink;
pub mod https;
pub mod idle;
pub mod json;
pub mod load;
pub mod mosquitto;
pub mod process;
pub mod proxy;
pub mod raft_impostor;
pub mod rogue_controller;
pub mod signed_webhook;
pub mod system_packages;
pub mod tls_client;
pub mod wait;
pub mod webhook_client;

pub use cluster::{AgentProcess, Cluster, ControllerProcess, Pki, TestEnv};
pub use wait::wait_until;
