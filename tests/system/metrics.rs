//! Prometheus metrics from a controller: what an operator's scrape sees.

use levee_tests::{TestEnv, https, wait_until};

use crate::common::TIMEOUT;

#[test]
fn a_controller_serves_metrics_a_scraper_can_read() {
    let mut env = TestEnv::new();
    env.controller_keys = "metrics_listen = \"127.0.0.1:0\"".into();
    let controller = env.start_controller(1);
    let specs = env.write_specs(
        "specs",
        &[(
            "web.yaml",
            "kind: Service\nname: web\nreplicas: 2\nprocess:\n  argv: [\"/bin/sh\", \"-c\", \"exec sleep 3600\"]\n",
        )],
    );
    controller.apply(&specs).expect("levee apply");
    let _agent = env.start_agent("worker-1", &[], &[&controller]);
    let url = format!("http://{}/metrics", controller.metrics_addr());
    let scrape = wait_until("a scrape showing the connected agent", TIMEOUT, || {
        let reply = https::get(&url);
        let connected = reply
            .body
            .lines()
            .any(|line| line == "levee_agents{state=\"connected\"} 1");
        if reply.status == 200 && connected {
            Ok(reply)
        } else {
            Err(format!("{reply:?}"))
        }
    });
    assert!(
        scrape
            .headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{scrape:?}"
    );
    for line in [
        "levee_raft_is_leader 1",
        "levee_raft_voters 1",
        "levee_spec_version 1",
        // One agent for two replicas: one is placed, one has no room.
        "levee_service_replicas_target{service=\"web\"} 2",
        "levee_service_replicas_placed{service=\"web\"} 1",
    ] {
        assert!(
            scrape.body.lines().any(|l| l == line),
            "missing {line:?} in:\n{}",
            scrape.body
        );
    }
}
