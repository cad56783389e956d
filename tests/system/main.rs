//! Whole-system tests: real processes on 127.0.0.1 over mTLS.
//! One test binary, one module per area.

mod actions;
mod bounds;
mod closed_pipe;
mod cluster;
mod common;
mod controller_trust;
mod deploy;
mod desired_state;
mod dev;
mod drift;
mod durability;
mod end_to_end;
mod file_modes;
mod inbound;
mod membership;
mod metrics;
mod mtls;
mod scenarios;
mod sources;
mod stack;
mod terminal;
mod trust;
mod webhook_replay;
mod whole_host;
