//! The example stack end to end: a module's directories, files and guarded
//! command, a per-agent template, and a real HTTP health check gating the
//! rollout of a real web server.

use std::io::{Read, Write};
use std::net::TcpStream;

use levee_tests::{TestEnv, cluster::free_port};

const MODULE: &str = include_str!("../../deploy/examples/stack/static-site.yaml");

fn web(port: u16) -> String {
    format!(
        r#"
kind: Service
name: web
replicas: 1
placement:
  selector: {{ role: web }}
uses:
  - module: static-site
    with: {{ title: "Hello from Levee", port: {port} }}
files:
  - path: www/host.txt
    template: "{{{{ service.name }}}} on {{{{ agent.id }}}} at site {{{{ agent.labels.site }}}}\n"
process:
  argv: ["/usr/bin/python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "www"]
  stop_timeout_ms: 2000
health:
  http: {{ port: {port}, path: /index.html }}
  interval_ms: 100
  start_timeout_ms: 20000
"#
    )
}

fn get(port: u16, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|err| err.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|err| err.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|err| err.to_string())?;
    Ok(response)
}

#[test]
fn a_module_based_service_is_planned_rolled_out_health_checked_and_served() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let agent = env.start_agent("web-1", &[("role", "web"), ("site", "ams")], &[&controller]);
    controller.wait_for_connected_agents(1);
    let port = free_port();
    let specs = env.write_specs(
        "stack",
        &[("static-site.yaml", MODULE), ("web.yaml", &web(port))],
    );
    let dir = specs.to_str().unwrap();

    let (code, stdout, stderr) = controller.run_with_code(&["plan", "-f", dir, "--output", "json"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let changes: Vec<&str> = plan["steps"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        [
            "+ directory:www",
            "+ file:www/index.html",
            "+ file:www/host.txt",
            "+ command:stamp",
            "+ process:web"
        ]
    );

    let (code, _, stderr) = controller.run_with_code(&["apply", "-f", dir]);
    assert_eq!(
        code,
        0,
        "the rollout waits for the HTTP check: {stderr}\n{}",
        agent.log_tail()
    );

    // Healthy means it answers: the module's page and the agent's template.
    let index = get(port, "/index.html").expect("the web server answers");
    assert!(
        index.contains("Hello from Levee, served on port"),
        "{index}"
    );
    let host = get(port, "/host.txt").unwrap();
    assert!(host.contains("web on web-1 at site ams"), "{host}");

    // The guarded command ran once; applying again runs nothing.
    let stamp = agent.service_dir("web").join("www/built-at.txt");
    let built_at = std::fs::read_to_string(&stamp).expect("the command ran");
    let (code, stdout, stderr) = controller.run_with_code(&["apply", "-f", dir]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("no change to the specs"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&stamp).unwrap(), built_at);
}
