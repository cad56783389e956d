//! Agent event sources with real inputs: a metric threshold read from
//! /proc, events emitted by an application on the host, a health check of
//! a real listener, and lines written to a real log file; and the agent's
//! own Prometheus metrics, scraped over real HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use levee_common::agent_config::{Check, LogPattern, Metric, MetricThreshold};
use levee_common::resource::Probe;
use levee_tests::process::binary;
use levee_tests::{TestEnv, wait_until};
use serde_json::Value;

use crate::common::{TIMEOUT, events_of, rows};

#[test]
fn a_metric_past_its_threshold_makes_one_event_not_one_per_sample() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    // Memory in use is always above 1%: the threshold fires on the first
    // sample and then stays exceeded, sampled every 50 ms.
    let agent = env.start_agent_with("worker-1", &[], &[&controller], |config| {
        config.metrics.push(MetricThreshold {
            name: "memory-used".into(),
            metric: Metric::Memory,
            above: Some(1.0),
            below: None,
            clear: None,
            sustained_ms: 0,
            interval_ms: 50,
            path: None,
        });
    });
    let exceeded = || {
        rows(&controller, "events")
            .into_iter()
            .filter(|event| event["type"] == "host.metric.exceeded")
            .collect::<Vec<_>>()
    };
    wait_until("the threshold event", TIMEOUT, || {
        if exceeded().is_empty() {
            Err(agent.log_tail())
        } else {
            Ok(())
        }
    });
    // Many more samples later (an emitted marker event is committed after
    // them), still one event.
    for _ in 0..5 {
        agent.emit("app.marker", "{}").expect("emit");
    }
    wait_until("the markers", TIMEOUT, || {
        let markers = rows(&controller, "events")
            .iter()
            .filter(|e| e["type"] == "app.marker")
            .count();
        if markers == 5 {
            Ok(())
        } else {
            Err(format!("{markers} markers"))
        }
    });
    let events = exceeded();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["subject"], "memory-used");
    assert!(events[0]["data"]["value"].as_f64().unwrap() > 1.0);
}

#[test]
fn a_check_sends_one_failed_event_when_its_listener_stops_and_one_recovered_when_it_is_back() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("local address").port();
    listener.set_nonblocking(true).expect("non-blocking");
    let agent = env.start_agent_with("worker-1", &[], &[&controller], |config| {
        config.checks.push(Check {
            name: "db".into(),
            probe: Probe::Tcp { port },
            interval_ms: 100,
            timeout_ms: 1_000,
            unhealthy_threshold: 3,
            healthy_threshold: 1,
        });
    });
    // Healthy first: the agent's probe connects.
    wait_until("the agent's first probe", TIMEOUT, || {
        listener
            .accept()
            .map(drop)
            .map_err(|err| format!("{err}\nagent log:\n{}", agent.log_tail()))
    });
    drop(listener);
    let failed = || events_of(&controller, "host.check.failed");
    let recovered = || events_of(&controller, "host.check.recovered");
    wait_until("host.check.failed", TIMEOUT, || {
        if failed().is_empty() {
            Err(agent.log_tail())
        } else {
            Ok(())
        }
    });
    // The same port again (std listeners reuse the address).
    let _listener = TcpListener::bind(("127.0.0.1", port)).expect("listen again");
    wait_until("host.check.recovered", TIMEOUT, || {
        if recovered().is_empty() {
            Err(agent.log_tail())
        } else {
            Ok(())
        }
    });
    // Events are committed in the agent's order, so any repeat of the
    // failure would be committed by now.
    let (failed, recovered) = (failed(), recovered());
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    assert!(failed[0]["log_index"].as_u64() < recovered[0]["log_index"].as_u64());
    let data = &failed[0]["data"];
    assert_eq!(failed[0]["subject"], "db");
    assert_eq!(data["check"], "db");
    assert_eq!(data["probe"], format!("tcp probe 127.0.0.1:{port}"));
    assert_eq!(data["failures"], 3);
    assert!(
        data["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("connect:")),
        "{data}"
    );
    assert_eq!(recovered[0]["subject"], "db");
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .expect("append to the log file");
}

#[test]
fn matching_log_lines_become_events_with_their_captures_across_a_rotation() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let log = env.path().join("app.log");
    append(&log, "ERROR code=1 history from before the agent started\n");
    let agent = env.start_agent_with("worker-1", &[], &[&controller], |config| {
        config.log_patterns.push(LogPattern {
            name: "errors".into(),
            path: log.clone(),
            regex: r"^ERROR code=(?P<code>\d+)".into(),
            event_type: "host.log.matched".into(),
            max_events_per_minute: 60,
            poll_ms: 50,
        });
    });
    // Lines written from now on are new to the agent.
    wait_until("the agent to follow the log file", TIMEOUT, || {
        if agent.log_lines_with(&["following a log file", r#""pattern":"errors""#]) > 0 {
            Ok(())
        } else {
            Err(agent.log_tail())
        }
    });
    let codes = || -> Vec<Value> {
        events_of(&controller, "host.log.matched")
            .iter()
            .map(|event| event["data"]["captures"]["code"].clone())
            .collect()
    };
    let wait_for_codes = |count: usize| {
        wait_until(&format!("{count} log event(s)"), TIMEOUT, || {
            let codes = codes();
            if codes.len() >= count {
                Ok(())
            } else {
                Err(format!("codes {codes:?}\nagent log:\n{}", agent.log_tail()))
            }
        })
    };
    // The line that does not match comes first: were it an event, it would
    // be committed before the matching one.
    append(
        &log,
        "INFO code=2 all fine\nERROR code=500 upstream timed out\n",
    );
    wait_for_codes(1);
    let events = events_of(&controller, "host.log.matched");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["subject"], "errors");
    assert_eq!(
        events[0]["data"]["line"],
        "ERROR code=500 upstream timed out"
    );
    assert_eq!(events[0]["data"]["path"], log.display().to_string());
    assert_eq!(events[0]["data"]["captures"]["code"], "500");

    // Rename rotation: the old file moves aside, a new one takes its name.
    std::fs::rename(&log, env.path().join("app.log.1")).expect("rotate");
    append(&log, "WARN code=3 slow\nERROR code=503 unavailable\n");
    wait_for_codes(2);
    assert_eq!(codes(), ["500", "503"]);
}

#[test]
fn a_log_pattern_whose_regex_does_not_compile_stops_the_agent_with_a_config_error() {
    let env = TestEnv::new();
    let config = env.path().join("agent-broken.toml");
    std::fs::write(
        &config,
        format!(
            r#"
controllers = ["127.0.0.1:1"]
data_dir = "{}"
[tls]
ca = "ca"
cert = "cert"
key = "key"
[[log_pattern]]
name = "broken"
path = "/var/log/app.log"
regex = "ERROR (unclosed"
"#,
            env.path().join("agent-broken").display()
        ),
    )
    .expect("write the config");
    // Even past the config, the missing TLS files end the agent at once.
    let output = Command::new(binary("levee-agent"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run levee-agent");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("log_pattern `broken`: `regex` does not compile"),
        "{stderr}"
    );
}

/// `GET /metrics` by hand: the body of a 200 with the exposition format's
/// content type, or what went wrong.
fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|err| format!("connect {addr}: {err}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|err| err.to_string())?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|err| format!("send the request: {err}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|err| format!("read the response: {err}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers: {response}"))?;
    let head = head.to_ascii_lowercase();
    if !head.starts_with("http/1.1 200")
        || !head.contains("content-type: text/plain; version=0.0.4; charset=utf-8")
    {
        return Err(format!("unexpected response head: {head}"));
    }
    Ok(body.to_owned())
}

#[test]
fn the_agent_serves_prometheus_metrics_and_says_when_it_is_connected() {
    let env = TestEnv::new();
    let controller = env.start_controller(1);
    let agent = env.start_agent_with("worker-1", &[], &[&controller], |config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().expect("an address"));
    });
    let addr_file = agent.config.data_dir.join("metrics.addr");
    let addr: SocketAddr = wait_until("the agent to write metrics.addr", TIMEOUT, || {
        let text = std::fs::read_to_string(&addr_file).map_err(|err| {
            format!(
                "{}: {err}\nagent log:\n{}",
                addr_file.display(),
                agent.log_tail()
            )
        })?;
        text.trim()
            .parse()
            .map_err(|err| format!("{text:?}: {err}"))
    });
    controller.wait_for_connected_agents(1);
    let text = wait_until("/metrics to say the agent is connected", TIMEOUT, || {
        let text = scrape(addr)?;
        if text.lines().any(|line| line == "levee_agent_connected 1") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(
        text.lines()
            .any(|line| line == "levee_agent_outbox_dropped_total 0"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE levee_agent_tasks_total counter\n"),
        "{text}"
    );
}
