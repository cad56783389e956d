//! Desired state: spec versions, rollbacks and replica targets.

use levee_common::spec::SpecSet;
use serde::{Deserialize, Serialize};

use super::Response;

/// A new desired-state version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutSpecs {
    pub specs: SpecSet,
    pub reason: String,
    pub applied_by: String,
    pub at_ms: i64,
}

/// Apply an earlier version's specs again, as a new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub version: u64,
    pub reason: String,
    pub requested_by: String,
    pub at_ms: i64,
}

/// Set a service's replica target, within its `min..=max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub service: String,
    pub replicas: u32,
    pub reason: String,
    pub requested_by: String,
    pub at_ms: i64,
}

proposal!(PutSpecs => super::SpecsApplied, Response::SpecsApplied);
proposal!(Rollback => super::SpecsApplied, Response::SpecsApplied);
proposal!(Scale => super::Scaled, Response::Scaled);
