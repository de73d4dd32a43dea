//! deploy/nats/: the three-server NATS cluster configuration that several tally instances run on
//! (docs/operations.md, "Several instances"), checked by the real nats-server.

use std::process::Command;

fn config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-cluster.conf")
}

// Proves the file is a valid configuration for each of the three servers it names, and that it
// is a JetStream cluster routed to all three.
#[test]
fn the_cluster_configuration_is_valid_for_each_server() {
    let text = std::fs::read_to_string(config()).expect("deploy/nats/nats-cluster.conf");
    for server in ["nats-0", "nats-1", "nats-2"] {
        assert!(text.contains(&format!("nats-route://{server}.nats:6222")), "a route to {server}");
        let out = Command::new("nats-server")
            .args(["-c"])
            .arg(config())
            .arg("-t")
            .env("SERVER_NAME", server)
            .output()
            .expect("run nats-server (scripts/env.sh puts it on PATH)");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.contains("is valid"), "{server}: {said}");
    }
    assert!(text.contains("jetstream {"), "JetStream is on");
}
