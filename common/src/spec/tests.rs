use super::*;

const CLOCK: &str = r#"
kind: Service
name: clock
placement:
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
    assert_eq!(clock.replicas, Replicas::fixed(1));
    assert_eq!(clock.placement.selector["role"], "demo");
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
    let labels = BTreeMap::new();
    let resources = set.services["clock"]
        .resources_for(&AgentFacts {
            id: "a",
            labels: &labels,
        })
        .unwrap();
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

const STACK: &str = r#"
kind: Module
name: static-site
parameters:
  greeting: { type: string }
  port: { type: integer, default: 8080 }
directories:
  - path: www
files:
  - path: www/index.html
    content: "${greeting} on ${port}, literal $${port}\n"
commands:
  - name: warm-cache
    argv: [/bin/echo, "${port}"]
    creates: www/.warm
---
kind: Service
name: web
replicas: { min: 2, max: 6 }
placement:
  selector: { role: web }
  spread: site
  resources: { cpu_millis: 250, memory_mb: 64 }
uses:
  - module: static-site
    with: { greeting: hello }
process:
  argv: [/usr/bin/python3, -m, http.server, "8080"]
  user: nobody
health:
  http: { port: 8080, path: /index.html }
  interval_ms: 500
update: { max_parallel: 2, auto_rollback: true }
files:
  - path: host.txt
    template: "{{ agent.id }}\n"
---
kind: Provisioner
name: spare-host
argv: [/usr/local/bin/make-host]
labels: { role: web }
"#;

#[test]
fn modules_expand_into_services_with_typed_parameters() {
    let set = SpecSet::parse([("stack.yaml", STACK)]).unwrap();
    let web = &set.services["web"];
    assert_eq!(
        web.replicas,
        Replicas {
            min: 2,
            max: 6,
            initial: 2
        }
    );
    assert_eq!(web.placement.spread.as_deref(), Some("site"));
    assert_eq!(
        web.files[0].content.as_deref(),
        Some("hello on 8080, literal ${port}\n")
    );
    assert_eq!(web.commands[0].argv[1], "8080");
    assert_eq!(set.provisioners["spare-host"].labels["role"], "web");
    let labels = BTreeMap::new();
    let keys: Vec<String> = web
        .resources_for(&AgentFacts {
            id: "edge-7",
            labels: &labels,
        })
        .unwrap()
        .iter()
        .map(|resource| resource.key())
        .collect();
    assert_eq!(
        keys,
        [
            "directory:www",
            "file:www/index.html",
            "file:host.txt",
            "command:warm-cache",
            "process:web"
        ]
    );
}

#[test]
fn module_misuse_names_the_parameter_and_the_line() {
    let wrong_type = STACK.replace(
        "with: { greeting: hello }",
        "with: { greeting: hello, port: eighty }",
    );
    let errors = SpecSet::parse([("stack.yaml", wrong_type.as_str())])
        .unwrap_err()
        .0;
    assert!(
        errors[0].message.contains("`port` must be an integer"),
        "{errors:?}"
    );
    assert!(errors[0].line > 0, "{errors:?}");
    let missing = STACK.replace("with: { greeting: hello }", "with: { colour: red }");
    let errors = SpecSet::parse([("stack.yaml", missing.as_str())])
        .unwrap_err()
        .0;
    let text = SpecErrors(errors).to_string();
    assert!(text.contains("no parameter `colour`"), "{text}");
    assert!(text.contains("needs parameter `greeting`"), "{text}");
    let undeclared = STACK.replace("${greeting} on", "${nope} on");
    let errors = SpecSet::parse([("stack.yaml", undeclared.as_str())])
        .unwrap_err()
        .0;
    assert!(
        SpecErrors(errors)
            .to_string()
            .contains("`${nope}` names no parameter")
    );
}

#[test]
fn semantic_errors_point_at_the_offending_line() {
    let bad = "kind: Service\nname: web\nprocess: { argv: [a] }\nreplicas: { min: 3, max: 2 }\nhealth: { tcp: { port: 80 }, http: { port: 80 } }\n";
    let errors = SpecSet::parse([("bad.yaml", bad)]).unwrap_err().0;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (4, 1), "{errors:?}");
    assert!(errors[0].message.contains("min <= initial <= max"));
    assert_eq!(errors[1].line, 5, "{errors:?}");
    assert!(errors[1].message.contains("exactly one of"));
}

#[test]
fn replicas_accept_a_count_or_a_range_and_nothing_else() {
    for (yaml, ok) in [
        ("replicas: 3", true),
        ("replicas: { min: 1, max: 3, initial: 2 }", true),
        ("replicas: -1", false),
        ("replicas: { min: 1 }", false),
        ("replicas: { min: 1, max: 2, most: 3 }", false),
        ("replicas: three", false),
    ] {
        let doc = format!("kind: Service\nname: s\nprocess: {{ argv: [a] }}\n{yaml}\n");
        assert_eq!(
            SpecSet::parse([("r.yaml", doc.as_str())]).is_ok(),
            ok,
            "{yaml}"
        );
    }
}

#[test]
fn a_file_needs_content_or_a_valid_template() {
    for (file, problem) in [
        ("{ path: a }", "needs `content`, `template` or `secret`"),
        ("{ path: a, content: x, template: y }", "not both"),
        ("{ path: a, template: \"{% if %}\" }", "template"),
        ("{ path: a, content: x, secret: db }", "only one"),
        ("{ path: a, secret: ../shadow }", "secret name"),
    ] {
        let doc = format!("kind: Service\nname: s\nprocess: {{ argv: [a] }}\nfiles: [{file}]\n");
        let errors = SpecSet::parse([("f.yaml", doc.as_str())]).unwrap_err().0;
        assert!(errors[0].message.contains(problem), "{file}: {errors:?}");
    }
}

#[test]
fn secrets_are_named_in_specs_and_resources_never_valued() {
    let doc = "kind: Service\nname: s\nprocess:\n  argv: [a]\n  env: { PLAIN: x, DB_PASSWORD: { secret: db-password } }\nfiles: [{ path: creds, secret: db-creds, mode: 0o600 }]\n";
    let set = SpecSet::parse([("f.yaml", doc)]).unwrap();
    let service = &set.services["s"];
    assert_eq!(
        service.secret_names().into_iter().collect::<Vec<_>>(),
        ["db-creds", "db-password"]
    );
    let bad = "kind: Service\nname: s\nprocess:\n  argv: [a]\n  env: { K: { secret: \"a b\" } }\n";
    let errors = SpecSet::parse([("f.yaml", bad)]).unwrap_err().0;
    assert!(errors[0].message.contains("env `K`"), "{errors:?}");
}

#[test]
fn every_example_spec_directory_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    for dir in ["specs", "stack"] {
        let mut files: Vec<(String, String)> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                (
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                )
            })
            .collect();
        files.sort();
        let parsed = SpecSet::parse(
            files
                .iter()
                .map(|(name, content)| (name.as_str(), content.as_str())),
        );
        assert!(
            parsed.is_ok(),
            "deploy/examples/{dir}: {}",
            parsed.unwrap_err()
        );
    }
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Arbitrary text, YAML-flavoured, never panics the parser.
        #[test]
        fn arbitrary_input_never_panics(input in "[a-z:{}\\[\\],\\-\\n #&*!|>'\"$0-9]{0,200}") {
            let _ = SpecSet::parse([("fuzz.yaml", input.as_str())]);
        }

        /// A valid stack with a few bytes changed gives specs or errors,
        /// and every error names the file.
        #[test]
        fn mutated_specs_give_located_errors(edits in prop::collection::vec((0usize..2000, "[ :\\-{}\\[\\]a-z0-9\\n$]"), 1..4)) {
            let mut text = STACK.to_owned();
            for (at, insert) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, &insert);
            }
            if let Err(errors) = SpecSet::parse([("stack.yaml", text.as_str())]) {
                prop_assert!(!errors.0.is_empty());
                for error in &errors.0 {
                    prop_assert!(error.file == "stack.yaml" || error.file.contains('`'), "{:?}", error);
                    prop_assert!(!error.message.is_empty());
                }
            }
        }
    }
}
