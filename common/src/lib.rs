//! Shared by the Levee controller and agent: the generated wire types
//! ([`pb`]), the domain model (ids, events, resources, specs), event
//! patterns, and certificate identity.
//!
//! Architecture invariant: this crate spawns no tasks and reads no clock;
//! the only I/O it does, at the binaries' edges, is reading and writing
//! certificate files ([`pki`], [`tls`]), reading the agent's config and
//! where its roots lead ([`agent_config`], [`allowed_roots`]), and making
//! files and directories owner-only ([`private_files`]).

pub mod agent_config;
pub mod allowed_roots;
pub mod event;
pub mod identity;
pub mod ids;
pub mod namespace;
pub mod pattern;
pub mod pb;
pub mod pki;
pub mod private_files;
pub mod refusals;
pub mod resource;
pub mod secret;
pub mod spec;
pub mod telemetry;
pub mod tls;
