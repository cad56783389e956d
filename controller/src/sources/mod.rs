//! Event sources outside the fleet. The leader receives them and commits
//! what they carry as events (`Command::RecordInbound`), acknowledging the
//! sender only after the commit.

pub mod config;
pub mod http;
pub mod mqtt;
pub mod sink;
pub mod webhook;
