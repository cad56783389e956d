//! Replica counts: `replicas: 3`, or `replicas: {min: 2, max: 6}` for a
//! service that scales (`initial` defaults to `min`).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Replicas {
    pub min: u32,
    pub max: u32,
    /// Replicas when the service is first placed, before any scaling.
    pub initial: u32,
}

impl Default for Replicas {
    fn default() -> Self {
        Self::fixed(1)
    }
}

impl Replicas {
    pub fn fixed(count: u32) -> Self {
        Self {
            min: count,
            max: count,
            initial: count,
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if !(self.min <= self.initial && self.initial <= self.max) {
            return Err(format!(
                "`replicas` needs min <= initial <= max, got min {}, initial {}, max {}",
                self.min, self.initial, self.max
            ));
        }
        Ok(())
    }

    /// `target` kept within `min..=max`.
    pub fn clamp(&self, target: u32) -> u32 {
        target.clamp(self.min, self.max)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    min: u32,
    max: u32,
    initial: Option<u32>,
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReplicasVisitor;

        impl<'de> Visitor<'de> for ReplicasVisitor {
            type Value = Replicas;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a replica count, or a map with `min`, `max` and optional `initial`")
            }

            fn visit_u64<E: de::Error>(self, count: u64) -> Result<Replicas, E> {
                u32::try_from(count)
                    .map(Replicas::fixed)
                    .map_err(|_| E::custom(format!("replica count {count} is too large")))
            }

            fn visit_i64<E: de::Error>(self, count: i64) -> Result<Replicas, E> {
                u64::try_from(count)
                    .map_err(|_| E::custom(format!("replica count {count} is negative")))
                    .and_then(|count| self.visit_u64(count))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Replicas, A::Error> {
                let range = Range::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Replicas {
                    min: range.min,
                    max: range.max,
                    initial: range.initial.unwrap_or(range.min),
                })
            }
        }

        deserializer.deserialize_any(ReplicasVisitor)
    }
}

impl JsonSchema for Replicas {
    fn schema_name() -> Cow<'static, str> {
        "Replicas".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A replica count, or {min, max, initial} for a service that scales.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["min", "max"],
                    "properties": {
                        "min": { "type": "integer", "minimum": 0 },
                        "max": { "type": "integer", "minimum": 0 },
                        "initial": { "type": "integer", "minimum": 0 }
                    }
                }
            ]
        })
    }
}
