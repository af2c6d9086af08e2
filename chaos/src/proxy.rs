//! The fault proxy on the peer links: partitions and delay without root.
//!
//! Every node listens for peers on a private port; the cluster's membership
//! names, for each node, the port of its proxy instead. So every Raft
//! connection to node `to` passes through `to`'s proxy, which reads the
//! connection's first frame (the `Hello` of the RPC handshake, decoded with
//! the node's own wire code) to learn the calling node `from`. From then on
//! the bytes of the connection flow in two directions, `from -> to` and
//! `to -> from`, each a link the controller can cut or slow:
//!
//! - a cut link stops forwarding (the bytes wait, as packets dropped by a
//!   firewall wait for TCP's retransmission); when it heals they flow
//!   again, unless a node gave up on the connection meanwhile;
//! - a delayed link holds each chunk for the link's delay, in order.
//!
//! A connection whose first frame is not a `Hello` with a node identity (a
//! tool, a probe) comes from node 0, which no rule names.
//!
//! Bounds: a first frame over [`HELLO_BYTES_MAX`] closes the connection;
//! each direction buffers one chunk of [`CHUNK_BYTES`].

use ballast_raft::net::frame;
use ballast_raft::net::message::Hello;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes a Hello frame may take, at most (it is about 90).
pub const HELLO_BYTES_MAX: usize = 4096;

/// Bytes read and forwarded at a time.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// A node id; 0 for a caller without one.
pub type NodeId = u64;

/// The links' state: which are cut, which are slowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    cut: BTreeSet<(NodeId, NodeId)>,
    delay_ms: BTreeMap<(NodeId, NodeId), u64>,
}

impl Rules {
    /// True when bytes from `from` to `to` do not flow.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// The delay on the link from `from` to `to`.
    pub fn delay(&self, from: NodeId, to: NodeId) -> Duration {
        Duration::from_millis(self.delay_ms.get(&(from, to)).copied().unwrap_or(0))
    }
}

/// The controller's handle on every proxy: changing a rule takes effect on
/// open connections at once.
#[derive(Clone)]
pub struct Links {
    rules: Arc<watch::Sender<Rules>>,
    nodes: Arc<Mutex<Vec<NodeId>>>,
}

impl Default for Links {
    fn default() -> Self {
        Links::new()
    }
}

impl Links {
    /// Every link open, no delay.
    pub fn new() -> Links {
        Links {
            rules: Arc::new(watch::channel(Rules::default()).0),
            nodes: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The current rules.
    pub fn rules(&self) -> Rules {
        self.rules.borrow().clone()
    }

    /// Cuts the link from `from` to `to` (one way).
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.rules.send_modify(|r| {
            r.cut.insert((from, to));
        });
    }

    /// Cuts both ways between every node of `a` and every node of `b`.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        self.rules.send_modify(|r| {
            for &x in a {
                for &y in b {
                    r.cut.insert((x, y));
                    r.cut.insert((y, x));
                }
            }
        });
    }

    /// Cuts `node` off from every other known node, both ways.
    pub fn isolate(&self, node: NodeId) {
        let others: Vec<NodeId> = self.known().into_iter().filter(|&n| n != node).collect();
        self.partition(&[node], &others);
    }

    /// Slows the link from `from` to `to` by `ms` (one way).
    pub fn delay(&self, from: NodeId, to: NodeId, ms: u64) {
        self.rules.send_modify(|r| {
            r.delay_ms.insert((from, to), ms);
        });
    }

    /// Slows every link between known nodes by `ms`.
    pub fn delay_all(&self, ms: u64) {
        let nodes = self.known();
        self.rules.send_modify(|r| {
            for &x in &nodes {
                for &y in &nodes {
                    if x != y {
                        r.delay_ms.insert((x, y), ms);
                    }
                }
            }
        });
    }

    /// Opens every link and drops every delay.
    pub fn heal(&self) {
        self.rules.send_replace(Rules::default());
    }

    /// The nodes whose proxies were started.
    pub fn known(&self) -> Vec<NodeId> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts the proxy for node `to`: accepts on `listen`, forwards to
    /// `target` (the node's private peer port). Runs until the runtime
    /// stops.
    pub async fn start_proxy(
        &self,
        to: NodeId,
        listen: &str,
        target: String,
    ) -> std::io::Result<()> {
        let listener = TcpListener::bind(listen).await?;
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(to);
        let rules = self.rules.subscribe();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let rules = rules.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let _ = forward(conn, to, &target, rules).await;
                });
            }
        });
        Ok(())
    }
}

/// Reads the first frame whole: who is calling, and the bytes to pass on.
async fn first_frame(conn: &mut TcpStream) -> std::io::Result<(NodeId, Vec<u8>)> {
    let mut prefix = [0u8; frame::LEN_BYTES];
    conn.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > HELLO_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("first frame of {len} bytes is no Hello"),
        ));
    }
    let mut bytes = prefix.to_vec();
    bytes.resize(frame::LEN_BYTES + len, 0);
    conn.read_exact(&mut bytes[frame::LEN_BYTES..]).await?;
    let from = frame::decode::<Hello>(&bytes[frame::LEN_BYTES..])
        .ok()
        .and_then(|h| h.identity)
        .map_or(0, |id| id.node_id);
    Ok((from, bytes))
}

async fn forward(
    mut conn: TcpStream,
    to: NodeId,
    target: &str,
    rules: watch::Receiver<Rules>,
) -> std::io::Result<()> {
    let (from, hello) = first_frame(&mut conn).await?;
    let mut upstream = TcpStream::connect(target).await?;
    let _ = conn.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    wait_open(&mut rules.clone(), from, to).await;
    upstream.write_all(&hello).await?;
    let (cr, cw) = conn.into_split();
    let (ur, uw) = upstream.into_split();
    let a = tokio::spawn(pump(cr, uw, from, to, rules.clone()));
    let b = tokio::spawn(pump(ur, cw, to, from, rules));
    // Either direction ending ends the connection, as a reset would.
    tokio::select! {
        _ = a => {}
        _ = b => {}
    }
    Ok(())
}

/// Waits until the link `from -> to` is not cut.
async fn wait_open(rules: &mut watch::Receiver<Rules>, from: NodeId, to: NodeId) {
    let _ = rules.wait_for(|r| !r.is_cut(from, to)).await;
}

async fn pump<R, W>(
    mut r: R,
    mut w: W,
    from: NodeId,
    to: NodeId,
    mut rules: watch::Receiver<Rules>,
) -> std::io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        // Bytes stay in the sender's socket while the link is cut, so a
        // cut link also stops the sender once its buffers fill.
        wait_open(&mut rules, from, to).await;
        let n = r.read(&mut buf).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
        let delay = rules.borrow().delay(from, to);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // A link cut while these bytes were read holds them until it heals.
        wait_open(&mut rules, from, to).await;
        w.write_all(&buf[..n]).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_raft::identity::PeerIdentity;

    fn hello_from(node: NodeId) -> Vec<u8> {
        let hello = Hello {
            client_nonce: [7; 32],
            identity: Some(PeerIdentity {
                node_id: node,
                cluster_id: None,
                incarnation: ballast_raft::identity::Id16([1; 16]),
            }),
        };
        frame::encode(&hello, 1 << 20).expect("encode")
    }

    async fn echo_server() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = c.read(&mut buf).await {
                        if n == 0 || c.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn proxied(links: &Links, to: NodeId) -> String {
        let target = echo_server().await;
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let listen = probe.local_addr().expect("addr").to_string();
        drop(probe);
        links.start_proxy(to, &listen, target).await.expect("proxy");
        listen
    }

    async fn round_trip(conn: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        conn.write_all(msg).await.expect("write");
        let mut got = vec![0u8; msg.len()];
        conn.read_exact(&mut got).await.expect("read");
        got
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_a_cut_holds_them_until_healed() {
        let links = Links::new();
        let addr = proxied(&links, 2).await;
        let mut conn = TcpStream::connect(&addr).await.expect("connect");
        let hello = hello_from(1);
        assert_eq!(
            round_trip(&mut conn, &hello).await,
            hello,
            "the Hello passes and echoes"
        );
        assert_eq!(round_trip(&mut conn, b"ping").await, b"ping".to_vec());

        links.cut(1, 2);
        conn.write_all(b"held").await.expect("write");
        let mut buf = [0u8; 4];
        let waited =
            tokio::time::timeout(Duration::from_millis(300), conn.read_exact(&mut buf)).await;
        assert!(waited.is_err(), "bytes crossed a cut link");
        links.heal();
        conn.read_exact(&mut buf).await.expect("read after heal");
        assert_eq!(&buf, b"held");
    }

    #[tokio::test]
    async fn a_cut_names_one_direction_and_one_caller() {
        let links = Links::new();
        let addr = proxied(&links, 2).await;
        // Node 3's link to node 2 is cut; node 1's is not.
        links.cut(3, 2);
        let mut from1 = TcpStream::connect(&addr).await.expect("connect");
        let hello = hello_from(1);
        assert_eq!(round_trip(&mut from1, &hello).await, hello);

        // 2 -> 1 cut only: node 1's bytes reach the echo, its answer waits.
        links.heal();
        links.cut(2, 1);
        from1.write_all(b"one-way").await.expect("write");
        let mut buf = [0u8; 7];
        let waited =
            tokio::time::timeout(Duration::from_millis(300), from1.read_exact(&mut buf)).await;
        assert!(waited.is_err(), "the reply crossed the cut direction");
        links.heal();
        from1.read_exact(&mut buf).await.expect("read after heal");
        assert_eq!(&buf, b"one-way");

        links.cut(3, 2);
        let mut from3 = TcpStream::connect(&addr).await.expect("connect");
        from3.write_all(&hello_from(3)).await.expect("write");
        let mut hello_back = vec![0u8; hello.len()];
        let waited = tokio::time::timeout(
            Duration::from_millis(300),
            from3.read_exact(&mut hello_back),
        )
        .await;
        assert!(waited.is_err(), "node 3's Hello crossed its cut link");
    }

    #[tokio::test]
    async fn a_delayed_link_holds_each_chunk() {
        let links = Links::new();
        let addr = proxied(&links, 2).await;
        let mut conn = TcpStream::connect(&addr).await.expect("connect");
        let hello = hello_from(1);
        round_trip(&mut conn, &hello).await;
        links.delay(1, 2, 150);
        links.delay(2, 1, 150);
        assert_eq!(links.rules().delay(1, 2), Duration::from_millis(150));
        let started = tokio::time::Instant::now();
        round_trip(&mut conn, b"slow").await;
        // Two links (there and back), 150 ms each.
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_caller_without_a_hello_is_node_zero_and_an_oversized_one_is_closed() {
        let links = Links::new();
        let addr = proxied(&links, 2).await;
        links.partition(&[1, 3], &[2]);
        // A frame that is not a Hello: node 0, which no partition names.
        let mut tool = TcpStream::connect(&addr).await.expect("connect");
        let not_hello = [0u8, 0, 0, 3, 9, 9, 9];
        assert_eq!(round_trip(&mut tool, &not_hello).await, not_hello.to_vec());

        let mut big = TcpStream::connect(&addr).await.expect("connect");
        big.write_all(&(1u32 << 20).to_be_bytes())
            .await
            .expect("write");
        let mut buf = [0u8; 1];
        assert_eq!(big.read(&mut buf).await.unwrap_or(0), 0, "closed");
    }
}
