//! Bounds: what an agent gathered while cut off reaches the cluster in
//! batches the controller accepts, however large the whole.

use levee_tests::{TestEnv, wait_until};

use crate::common::{TIMEOUT, rows};

#[test]
fn events_gathered_offline_past_the_message_limit_are_all_committed() {
    let env = TestEnv::new();
    // The controller is not running yet: the agent gathers events.
    let mut controller = env.controller(1, &[]);
    let agent = env.start_agent("edge-1", &[], &[&controller]);
    // 100 events of 60 KiB: 6 MB, past the controllers' 4 MiB message
    // limit if sent as one batch.
    let data = format!("{{\"blob\":\"{}\"}}", "x".repeat(60 * 1024));
    wait_until("the agent's emit socket", TIMEOUT, || {
        agent.emit("app.blob", &data).map(drop)
    });
    for _ in 1..100 {
        agent.emit("app.blob", &data).expect("emit");
    }
    controller.start();
    wait_until("every gathered event committed", TIMEOUT, || {
        let agents = rows(&controller, "agents");
        let committed = agents
            .iter()
            .find(|agent| agent["agent_id"] == "edge-1")
            .and_then(|agent| agent["events_committed"].as_u64())
            .unwrap_or(0);
        (committed == 100)
            .then_some(())
            .ok_or_else(|| format!("{committed} of 100 committed"))
    });
}
