//! The JSON Schema of spec documents, generated from the same types the
//! parser uses, so editors validate exactly what `levee validate` accepts.
//! `levee schema` prints it; the repository ships it at
//! `deploy/schema/levee-spec.schema.json` (a test keeps that file current).

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Value, json};

use super::module::ModuleSpec;
use super::rule::{ProvisionerSpec, RuleSpec};
use super::service::ServiceSpec;
use super::timer::TimerSpec;

/// One schema for any document: `oneOf` the kinds, told apart by `kind`.
pub fn spec_schema() -> Value {
    let mut generator = SchemaGenerator::new(SchemaSettings::draft2020_12());
    let mut kinds = Vec::new();
    for (kind, mut schema) in [
        ("Service", kind_schema::<ServiceSpec>(&mut generator)),
        ("Module", kind_schema::<ModuleSpec>(&mut generator)),
        ("Rule", kind_schema::<RuleSpec>(&mut generator)),
        (
            "Provisioner",
            kind_schema::<ProvisionerSpec>(&mut generator),
        ),
        ("Timer", kind_schema::<TimerSpec>(&mut generator)),
    ] {
        schema["properties"]["kind"] = json!({ "const": kind });
        schema["title"] = json!(kind);
        kinds.push(schema);
    }
    let definitions = serde_json::to_value(generator.take_definitions(true)).unwrap_or_default();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://levee.dev/schema/levee-spec.schema.json",
        "title": "Levee spec document",
        "oneOf": kinds,
        "$defs": definitions,
    })
}

fn kind_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    let mut schema = generator.root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("$defs");
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_schema_is_current() {
        let generated = serde_json::to_string_pretty(&spec_schema()).unwrap() + "\n";
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/schema/levee-spec.schema.json"
        );
        if std::env::var_os("LEVEE_UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let shipped = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            shipped == generated,
            "{path} is out of date; regenerate it with `LEVEE_UPDATE_SCHEMA=1 cargo test -p levee-common schema`"
        );
    }

    #[test]
    fn every_kind_is_told_apart_by_its_kind_field() {
        let schema = spec_schema();
        let kinds: Vec<&str> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kind| kind["properties"]["kind"]["const"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Service", "Module", "Rule", "Provisioner", "Timer"]);
        let service = &schema["oneOf"][0];
        assert_eq!(
            service["additionalProperties"],
            json!(false),
            "unknown fields must be refused"
        );
    }
}
