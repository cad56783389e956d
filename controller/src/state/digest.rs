//! A digest of the replicated state: two nodes (or two builds) that applied
//! the same log must hold states with the same digest.
//!
//! The digest covers the state's canonical form, a JSON object keyed by
//! field name, so it is unaffected by how fields are grouped in the code,
//! and changes only when what `apply` decides changes.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::ClusterState;

impl ClusterState {
    /// The hex SHA-256 of the state's canonical form.
    pub fn digest(&self) -> String {
        let canonical = serde_json::to_vec(&self.canonical())
            // A state holds only maps with string-like keys and plain data.
            .expect("the state serialises to JSON");
        let hash = Sha256::digest(&canonical);
        hash.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Every replicated field by name, with every object's keys sorted
    /// (whatever order the code declares them in) and the state's parts
    /// flattened (whichever part a field belongs to).
    fn canonical(&self) -> serde_json::Value {
        let serde_json::Value::Object(parts) =
            serde_json::to_value(self).expect("the state serialises to JSON")
        else {
            unreachable!("the state serialises to an object");
        };
        let mut fields = serde_json::Map::new();
        for (part, value) in parts {
            match value {
                serde_json::Value::Object(part_fields) => fields.extend(part_fields),
                other => unreachable!("part `{part}` serialises to an object, not {other}"),
            }
        }
        sorted(serde_json::Value::Object(fields))
    }
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(fields) => {
            let fields: BTreeMap<String, serde_json::Value> = fields
                .into_iter()
                .map(|(name, value)| (name, sorted(value)))
                .collect();
            serde_json::Value::Object(fields.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}
