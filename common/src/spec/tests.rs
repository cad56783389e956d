use super::*;

const CLOCK: &str = r#"
kind: Service
name: clock
selector: { role: demo }
process:
  argv: ["/bin/sh", "-c", "sleep 1000"]
files:
  - path: banner.txt
    content: "hello\n"
---
kind: Rule
name: repair-clock
match:
  type: ["host.process.exited"]
  subject: ["clock"]
action:
  repair: { service: clock }
"#;

#[test]
fn a_service_and_a_rule_parse_from_one_file() {
    let set = SpecSet::parse([("clock.yaml", CLOCK)]).unwrap();
    let clock = &set.services["clock"];
    assert_eq!(clock.replicas, 1);
    assert_eq!(clock.selector["role"], "demo");
    assert_eq!(
        set.rules["repair-clock"].action,
        RuleAction::Repair {
            service: "clock".into()
        }
    );
}

#[test]
fn a_service_becomes_its_files_then_its_process() {
    let set = SpecSet::parse([("clock.yaml", CLOCK)]).unwrap();
    let resources = set.services["clock"].resources();
    assert_eq!(resources[0].key(), "file:banner.txt");
    assert_eq!(resources[1].key(), "process:clock");
}

#[test]
fn unknown_fields_are_errors_with_file_line_and_column() {
    let bad = "kind: Service\nname: x\nprocess:\n  argv: [a]\n  argz: [b]\n";
    let errors = SpecSet::parse([("bad.yaml", bad)]).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, "bad.yaml");
    assert_eq!(errors[0].line, 5, "{errors:?}");
    assert!(errors[0].message.contains("argz"), "{}", errors[0].message);
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let first = "kind: Service\nname: Bad_Name\nprocess: { argv: [a] }\n";
    let second = "kind: Gadget\nname: x\n";
    let errors = SpecSet::parse([("a.yaml", first), ("b.yaml", second)])
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].message.contains("Bad_Name"));
    assert!(errors[1].message.contains("unknown kind `Gadget`"));
}

#[test]
fn path_traversal_and_dangling_references_are_refused() {
    let traversal = "kind: Service\nname: x\nprocess: { argv: [a] }\nfiles: [{ path: ../../etc/passwd, content: x }]\n";
    let errors = SpecSet::parse([("t.yaml", traversal)]).unwrap_err().0;
    assert!(errors[0].message.contains("`..`"), "{errors:?}");

    let dangling =
        "kind: Rule\nname: r\nmatch: { type: [a] }\naction: { repair: { service: ghost } }\n";
    let errors = SpecSet::parse([("r.yaml", dangling)]).unwrap_err().0;
    assert!(errors[0].message.contains("ghost"), "{errors:?}");
}

#[test]
fn syntax_errors_and_garbage_never_panic() {
    for input in [
        "kind: [",
        ":\n:\n-",
        "\0\0",
        "---\n---\n",
        "kind: Rule\nmatch: 3\n",
    ] {
        let _ = SpecSet::parse([("fuzz.yaml", input)]);
    }
    assert!(SpecSet::parse([("empty.yaml", "---\n")]).is_ok());
}

#[test]
fn recursive_aliases_are_refused_not_followed() {
    let errors = SpecSet::parse([("bomb.yaml", "&a [*a]")]).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
}
