//! A real, local Redis Cluster for tests: three masters and three replicas of
//! `redis-server` on free loopback ports, joined with `redis-cli --cluster
//! create`, and the faults the tests inflict on it (kill -9 and restart,
//! SCRIPT FLUSH, slot migration). Killed and deleted on drop.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use super::deployment;
use super::redis_server::{binary, debug_command_args};

/// Masters, each with one replica.
const MASTERS: usize = 3;
const NODES: usize = MASTERS * 2;
const SLOTS: u16 = 16384;
/// Small, so that a killed master is failed over in about a second.
const NODE_TIMEOUT_MS: u32 = 500;
/// How long any wait on the cluster may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);

/// Whether a missing redis-server must fail the test rather than skip it.
fn redis_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("TOLLGATE_REQUIRE_REDIS").is_some()
}

fn installed(binary: &str) -> bool {
    Command::new(binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// One `redis-server` of the cluster.
#[derive(Debug)]
struct Node {
    port: u16,
    dir: PathBuf,
    process: Option<Child>,
}

impl Node {
    fn spawn(&mut self) -> std::io::Result<()> {
        let mut command = Command::new(binary());
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no", "--daemonize", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            // A replica whose master died may always take over, however stale.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--save", "", "--appendonly", "no"])
            // Replicas sync at once, not after the default 5 s wait for more replicas.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "redis.log"])
            .args(debug_command_args());
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        self.process = Some(child);
        Ok(())
    }

    /// kill -9, and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exited(&mut self) -> bool {
        self.process.as_mut().is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A running cluster of [`NODES`] nodes. Node indices are stable across
/// kills and restarts; which nodes are masters is not (a killed master is
/// failed over), so ask [`Cluster::masters`].
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    root: PathBuf,
}

impl Cluster {
    /// Starts a cluster and waits until every node agrees that all 16384
    /// slots are served. `None` (after printing why) when redis-server or
    /// redis-cli is not installed, unless CI or TOLLGATE_REQUIRE_REDIS is set:
    /// then it panics.
    pub async fn start() -> Option<Self> {
        let missing: Vec<_> = [binary(), "redis-cli".to_owned()].into_iter().filter(|name| !installed(name)).collect();
        if !missing.is_empty() {
            let reason = format!("{} not found on PATH", missing.join(" and "));
            assert!(!redis_required(), "{reason}, and CI or TOLLGATE_REQUIRE_REDIS says Redis tests must run");
            eprintln!("skipping a Redis Cluster test: {reason}");
            return None;
        }
        let mut attempts = 0;
        let start = Instant::now();
        loop {
            attempts += 1;
            match Self::try_start().await {
                Ok(cluster) => {
                    eprintln!("a Redis Cluster of {NODES} nodes is up after {:?}", start.elapsed());
                    return Some(cluster);
                }
                // Another process may take a port between our probe and the
                // server's bind: pick new ports.
                Err(error) if attempts < 3 => eprintln!("cluster start failed ({error}); retrying on new ports"),
                Err(error) => panic!("could not start a Redis Cluster: {error}"),
            }
        }
    }

    async fn try_start() -> Result<Self, String> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "tollgate-cluster-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cluster = Self { nodes: Vec::with_capacity(NODES), root };
        for port in free_cluster_ports(NODES) {
            let dir = cluster.root.join(port.to_string());
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let mut node = Node { port, dir, process: None };
            node.spawn().map_err(|e| format!("spawning redis-server: {e}"))?;
            cluster.nodes.push(node);
        }
        for index in 0..NODES {
            cluster.wait_until_answering(index).await?;
        }
        let addresses: Vec<String> = cluster.nodes.iter().map(Node::address).collect();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addresses)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
        })
        .await
        .expect("redis-cli task panicked")
        .map_err(|e| format!("running redis-cli: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        // A cluster that never agrees (a port taken by another process
        // meanwhile, a node that lost the handshake) is tried again anew.
        cluster.healthy_within(PATIENCE).await?;
        Ok(cluster)
    }

    /// One `redis://` URL per node, for a cluster client's initial nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// A redis-rs cluster client for this cluster, with short retry waits
    /// (the default waits 1.28 s and more between retries).
    pub fn client(&self) -> ClusterClient {
        ClusterClient::builder(self.urls())
            .min_retry_wait(5)
            .max_retry_wait(200)
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(5))
            .build()
            .expect("a cluster client for local nodes")
    }

    /// A new cluster connection (see [`client`](Self::client)).
    pub async fn connect(&self) -> ClusterConnection {
        self.client().get_async_connection().await.expect("connect to the cluster")
    }

    /// A plain connection to node `index`, for administration.
    pub async fn node(&self, index: usize) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        redis::Client::open(self.nodes[index].url())?.get_multiplexed_async_connection_with_config(&config).await
    }

    /// Indices of the nodes that serve slots now, as the first live node
    /// sees it.
    pub async fn masters(&self) -> Vec<usize> {
        let view = self.any_view().await;
        let mut masters: Vec<usize> = view
            .iter()
            .filter(|line| line.is_master && !line.slots.is_empty())
            .map(|line| self.index_of(line))
            .collect();
        masters.sort_unstable();
        masters
    }

    /// The hash slot of `key`, as the cluster computes it.
    pub async fn slot_of(&self, key: &[u8]) -> u16 {
        let mut connection = self.live_node().await;
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut connection).await.expect("CLUSTER KEYSLOT")
    }

    /// The node that serves `slot` now.
    pub async fn master_of_slot(&self, slot: u16) -> usize {
        let view = self.any_view().await;
        let line = view.iter().find(|line| line.serves(slot)).unwrap_or_else(|| panic!("no master serves slot {slot}"));
        self.index_of(line)
    }

    /// The node that serves `key` now.
    pub async fn master_of_key(&self, key: &[u8]) -> usize {
        self.master_of_slot(self.slot_of(key).await).await
    }

    /// kill -9 node `index`. Its port and directory (nodes.conf) stay, for
    /// [`restart`](Self::restart). With no persistence, a restarted master
    /// comes back empty.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again on its port and directory and waits until it
    /// answers; it rejoins the cluster with its old identity. Call
    /// [`wait_until_healthy`](Self::wait_until_healthy) to wait for the
    /// cluster to agree again.
    pub async fn restart(&mut self, index: usize) {
        self.nodes[index].kill();
        self.nodes[index].spawn().expect("respawn redis-server");
        self.wait_until_answering(index).await.expect("the restarted node answers");
    }

    /// `host:port` of node `index`, as the cluster names it.
    pub fn address(&self, index: usize) -> String {
        self.nodes[index].address()
    }

    /// The node that replicates master `index`.
    pub async fn replica_of(&self, master: usize) -> usize {
        let view = self.any_view().await;
        let address = self.nodes[master].address();
        let id = &view.iter().find(|line| line.address == address).expect("the master is known").id;
        let replica = view.iter().find(|line| &line.master_id == id).expect("every master has a replica");
        self.index_of(replica)
    }

    /// CONFIG SET `name` `value` on every running node.
    pub async fn configure(&mut self, name: &str, value: &str) {
        for index in 0..self.nodes.len() {
            if self.nodes[index].exited() {
                continue;
            }
            let mut connection = self.node(index).await.expect("connect to a node");
            let () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query_async(&mut connection)
                .await
                .expect("CONFIG SET");
        }
    }

    /// SCRIPT FLUSH on every running node, so every EVALSHA meets NOSCRIPT.
    pub async fn flush_scripts(&mut self) {
        for index in 0..self.nodes.len() {
            if self.nodes[index].exited() {
                continue;
            }
            let mut connection = self.node(index).await.expect("connect to a node");
            let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut connection).await.expect("SCRIPT FLUSH");
        }
    }

    /// Makes node `index` stop answering for `duration` (DEBUG SLEEP), in the
    /// background; returns once the node has stopped answering. Keep
    /// `duration` under the node timeout (500 ms), or the cluster fails the
    /// node over.
    pub async fn stall(&self, index: usize, duration: Duration) -> tokio::task::JoinHandle<()> {
        deployment::stall(&self.nodes[index].url(), duration).await
    }

    /// Moves `slot` to master `to` the way `redis-cli --cluster reshard`
    /// does: IMPORTING on the target, MIGRATING on the source, MIGRATE the
    /// keys in batches of `batch` with `pause` between batches (so that
    /// clients meet ASK meanwhile), then SETSLOT NODE on every master (so
    /// that clients meet MOVED). Returns how many keys moved.
    pub async fn migrate_slot(&self, slot: u16, to: usize, batch: usize, pause: Duration) -> usize {
        let from = self.master_of_slot(slot).await;
        assert_ne!(from, to, "slot {slot} is already on node {to}");
        let mut source = self.node(from).await.expect("connect to the source");
        let mut target = self.node(to).await.expect("connect to the target");
        let source_id = node_id(&mut source).await;
        let target_id = node_id(&mut target).await;

        let () = setslot(&mut target, slot, "IMPORTING", &source_id).await;
        let () = setslot(&mut source, slot, "MIGRATING", &target_id).await;
        let mut moved = 0;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(batch)
                .query_async(&mut source)
                .await
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query_async(&mut source)
                .await
                .expect("MIGRATE");
            moved += keys.len();
            tokio::time::sleep(pause).await;
        }
        // Target first, then source, then everyone else, as the manual says.
        let () = setslot(&mut target, slot, "NODE", &target_id).await;
        let () = setslot(&mut source, slot, "NODE", &target_id).await;
        for master in self.masters().await {
            if master != from && master != to {
                let mut other = self.node(master).await.expect("connect to a master");
                let () = setslot(&mut other, slot, "NODE", &target_id).await;
            }
        }
        moved
    }

    /// Keys matching `pattern` on every master, with their PTTL in
    /// milliseconds (-1: no TTL).
    pub async fn keys_with_ttl(&self, pattern: &str) -> Vec<(Vec<u8>, i64)> {
        let mut found = Vec::new();
        for master in self.masters().await {
            let mut connection = self.node(master).await.expect("connect to a master");
            found.extend(deployment::keys_with_ttl(&mut connection, pattern).await);
        }
        found
    }

    /// Waits until every live node says cluster_state:ok with all 16384
    /// slots served, every node sees the same nodes, roles and slots, no
    /// slot is open, and every replica is in sync with its master.
    pub async fn wait_until_healthy(&self) {
        if let Err(problem) = self.healthy_within(PATIENCE).await {
            panic!("the cluster never became healthy: {problem}");
        }
    }

    /// Waits until the cluster is healthy, or says what is still wrong
    /// after `patience`.
    async fn healthy_within(&self, patience: Duration) -> Result<(), String> {
        let deadline = Instant::now() + patience;
        loop {
            match self.health().await {
                Ok(()) => return Ok(()),
                Err(problem) if Instant::now() > deadline => return Err(problem),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    async fn health(&self) -> Result<(), String> {
        let mut agreed: Option<BTreeSet<NodeLine>> = None;
        for index in 0..self.nodes.len() {
            let mut connection = self.node(index).await.map_err(|e| format!("node {index}: {e}"))?;
            let info: String =
                redis::cmd("CLUSTER").arg("INFO").query_async(&mut connection).await.map_err(|e| e.to_string())?;
            for expected in ["cluster_state:ok", "cluster_slots_ok:16384", &format!("cluster_known_nodes:{NODES}")] {
                if !info.lines().any(|line| line.trim() == expected) {
                    return Err(format!("node {index} lacks {expected}"));
                }
            }
            let view = cluster_nodes(&mut connection).await.map_err(|e| e.to_string())?;
            if let Some(line) = view.iter().find(|line| !line.healthy) {
                return Err(format!("node {index} sees {} as unhealthy", line.address));
            }
            match &agreed {
                None => agreed = Some(view),
                Some(first) if *first != view => return Err(format!("node {index} disagrees with node 0")),
                Some(_) => {}
            }
            let replication: String =
                redis::cmd("INFO").arg("replication").query_async(&mut connection).await.map_err(|e| e.to_string())?;
            if replication.contains("role:slave") && !replication.contains("master_link_status:up") {
                return Err(format!("replica {index} is not in sync"));
            }
        }
        let view = agreed.unwrap_or_default();
        let served: usize =
            view.iter().flat_map(|line| &line.slots).map(|(low, high)| usize::from(high - low) + 1).sum();
        if served != usize::from(SLOTS) {
            return Err(format!("{served} slots served"));
        }
        if view.iter().filter(|line| line.is_master && !line.slots.is_empty()).count() != MASTERS {
            return Err("not three masters with slots".into());
        }
        Ok(())
    }

    async fn wait_until_answering(&mut self, index: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = self.node(index).await
                && redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
            {
                return Ok(());
            }
            if self.nodes[index].exited() {
                let log = std::fs::read_to_string(self.nodes[index].dir.join("redis.log")).unwrap_or_default();
                return Err(format!("redis-server on port {} exited: {log}", self.nodes[index].port));
            }
            if Instant::now() > deadline {
                return Err(format!("redis-server on port {} never answered", self.nodes[index].port));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn live_node(&self) -> MultiplexedConnection {
        for index in 0..self.nodes.len() {
            if let Ok(mut connection) = self.node(index).await
                && redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
            {
                return connection;
            }
        }
        panic!("no node of the cluster answers")
    }

    async fn any_view(&self) -> BTreeSet<NodeLine> {
        let mut connection = self.live_node().await;
        cluster_nodes(&mut connection).await.expect("CLUSTER NODES")
    }

    fn index_of(&self, line: &NodeLine) -> usize {
        self.nodes.iter().position(|node| node.address() == line.address).expect("a node of this cluster")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// One line of CLUSTER NODES, reduced to what every node must agree on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct NodeLine {
    id: String,
    address: String,
    is_master: bool,
    master_id: String,
    /// Served slot ranges; open (migrating/importing) slots are kept
    /// verbatim in `open`.
    slots: Vec<(u16, u16)>,
    open: Vec<String>,
    healthy: bool,
}

impl NodeLine {
    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(low, high)| (low..=high).contains(&slot))
    }

    /// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [id, address, flags, master_id, _ping, _pong, _epoch, link, slots @ ..] = fields.as_slice() else {
            return None;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        let mut served = Vec::new();
        let mut open = Vec::new();
        for slot in slots {
            if slot.starts_with('[') {
                open.push((*slot).to_owned());
            } else if let Some((low, high)) = slot.split_once('-') {
                served.push((low.parse().ok()?, high.parse().ok()?));
            } else {
                let slot = slot.parse().ok()?;
                served.push((slot, slot));
            }
        }
        let healthy = *link == "connected"
            && open.is_empty()
            && !flags.iter().any(|flag| matches!(*flag, "fail" | "fail?" | "handshake" | "noaddr"));
        Some(Self {
            id: (*id).to_owned(),
            address: address.split('@').next()?.to_owned(),
            is_master: flags.contains(&"master"),
            master_id: (*master_id).to_owned(),
            slots: served,
            open,
            healthy,
        })
    }
}

async fn cluster_nodes(connection: &mut MultiplexedConnection) -> redis::RedisResult<BTreeSet<NodeLine>> {
    let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(connection).await?;
    Ok(text.lines().filter_map(NodeLine::parse).collect())
}

async fn node_id(connection: &mut MultiplexedConnection) -> String {
    redis::cmd("CLUSTER").arg("MYID").query_async(connection).await.expect("CLUSTER MYID")
}

async fn setslot(connection: &mut MultiplexedConnection, slot: u16, state: &str, node_id: &str) {
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(state)
        .arg(node_id)
        .query_async(connection)
        .await
        .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {state}: {e}"))
}

/// `count` ports that are free on loopback, each with its cluster bus port
/// (port + 10000) free too. The probes are held until all are chosen, so the
/// ports are distinct; another process may still take one before the
/// servers bind, which [`Cluster::start`] survives by retrying.
fn free_cluster_ports(count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < count {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = probe.local_addr().expect("a bound address").port();
        let Some(bus) = port.checked_add(10_000) else { continue };
        let Ok(bus_probe) = TcpListener::bind(("127.0.0.1", bus)) else { continue };
        held.push((probe, bus_probe));
        ports.push(port);
    }
    ports
}
