//! Shared by the Levee controller and agent: the generated wire types
//! ([`pb`]), the domain model (ids, events, resources, specs), event
//! patterns, and certificate identity.
//!
//! Architecture invariant: this crate spawns no tasks and reads no clock;
//! the only I/O it does is reading and writing certificate files in
//! [`pki`] and [`tls`], which the binaries call at their edges.

pub mod agent_config;
pub mod event;
pub mod identity;
pub mod ids;
pub mod pattern;
pub mod pb;
pub mod pki;
pub mod refusals;
pub mod resource;
pub mod spec;
pub mod telemetry;
pub mod tls;
