//! A NATS cluster of three JetStream servers on loopback ports, for the tests of several tally
//! instances (docs/operations.md, "Several instances: partition ownership"). Each server is a
//! [`NatsServer`] from a config file with its `server_name`, a `cluster` block routing to the
//! other two, and a monitoring port, whose `/jsz` says when JetStream has a meta leader.

use std::time::Duration;

use crate::{free_port, wait_until, NatsServer};

/// How long a fresh cluster may take to elect its JetStream meta leader.
const META_LEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// One server of the cluster.
pub struct Node {
    pub name: String,
    pub server: NatsServer,
    monitor_port: u16,
}

pub struct NatsCluster {
    pub nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts three servers routed to each other and waits until JetStream has a meta leader
    /// that every server knows.
    pub async fn start() -> NatsCluster {
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for (index, own) in route_ports.iter().enumerate() {
            let name = format!("n{index}");
            let monitor_port = free_port();
            let routes: Vec<String> = route_ports
                .iter()
                .filter(|port| *port != own)
                .map(|port| format!("\"nats-route://127.0.0.1:{port}\""))
                .collect();
            let extra = format!(
                "server_name: {name}\nhttp: \"127.0.0.1:{monitor_port}\"\ncluster {{\n  name: tally-test\n  listen: \
                 \"127.0.0.1:{own}\"\n  routes: [{}]\n}}\n",
                routes.join(", ")
            );
            nodes.push(Node { name, server: NatsServer::start_with_config(&extra), monitor_port });
        }
        let cluster = NatsCluster { nodes };
        cluster.wait_for_meta_leader().await;
        cluster
    }

    /// Every server's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.server.url()).collect()
    }

    /// A client that knows every server, so it reconnects to another when one dies.
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.urls())
            .await
            .unwrap_or_else(|err| panic!("connecting to the NATS cluster {:?}: {err}", self.urls()))
    }

    /// The node named `name` (a `server_name`, as stream info's `cluster.leader` gives it).
    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        let names: Vec<String> = self.nodes.iter().map(|node| node.name.clone()).collect();
        self.nodes.iter_mut().find(|node| node.name == name).unwrap_or_else(|| panic!("no server {name} in {names:?}"))
    }

    /// Waits until every running server names the same JetStream meta leader.
    pub async fn wait_for_meta_leader(&self) {
        let ports: Vec<u16> = self.nodes.iter().filter(|n| n.server.pid().is_some()).map(|n| n.monitor_port).collect();
        let ports = &ports;
        let agreed = wait_until(META_LEADER_TIMEOUT, move || async move {
            let mut leaders = Vec::new();
            let mut followers_current = false;
            for port in ports {
                let (leader, current) = meta_view(*port).await;
                followers_current |= current >= ports.len() - 1;
                leaders.push(leader);
            }
            // The leader must also see every other running server as current: until then it
            // cannot place a stream on three of them.
            followers_current && leaders.iter().all(|leader| leader.is_some() && *leader == leaders[0])
        })
        .await;
        let logs: Vec<String> = self.nodes.iter().map(|n| format!("--- {} ---\n{}", n.name, n.server.log())).collect();
        assert!(agreed, "no JetStream meta leader within {META_LEADER_TIMEOUT:?}:\n{}", logs.join("\n"));
    }
}

impl Node {
    /// Kills the server at once (SIGKILL), as a crashed machine would stop.
    pub fn kill(&mut self) {
        let pid = self.server.pid().expect("the server runs");
        let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        let status = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(status, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
    }
}

/// The meta leader a server's `/jsz` names, if any; and, when it is the leader, how many of the
/// other servers it sees as current.
async fn meta_view(monitor_port: u16) -> (Option<String>, usize) {
    let url = format!("http://127.0.0.1:{monitor_port}/jsz");
    let Some(body) = async { reqwest::get(&url).await.ok()?.json::<serde_json::Value>().await.ok() }.await else {
        return (None, 0);
    };
    let meta = &body["meta_cluster"];
    let leader = meta["leader"].as_str().filter(|leader| !leader.is_empty()).map(str::to_string);
    let replicas = meta["replicas"].as_array().map(Vec::as_slice).unwrap_or_default();
    let current = replicas.iter().filter(|r| r["current"] == true && r["offline"] != true).count();
    (leader, current)
}
