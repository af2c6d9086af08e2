//! The `bad-peer` fault: a peer that holds the cluster's secret forwards
//! requests no log may hold.

use crate::cluster::node_host::{self, host_name};
use crate::cluster::transport::TurmoilTransport;
use crate::cluster::world::World;
use ballast_raft::net::{ForwardClient, NetConfig, Secret};
use ballast_raft::Request;
use std::sync::Arc;

/// A peer that holds the cluster's secret forwards two requests no log may
/// hold (an empty batch and a nested one) to node `to`; every node must
/// refuse them where they enter and keep serving.
pub(super) async fn bad_peer(name: &str, to: u64, seed: u64, world: &World) {
    let mut net = NetConfig::new(node_host::seeded_nonces(seed));
    net.secret = Some(Secret::new(node_host::SECRET));
    net.transport = TurmoilTransport::shared(name);
    let client = ForwardClient::new(Arc::new(net));
    let addr = format!("{}:{}", host_name(to), node_host::RAFT_PORT);
    let empty = Request::Multi(Vec::new());
    let nested = Request::Multi(vec![Request::Multi(vec![Request::Delete {
        key: b"k0-g0".to_vec(),
    }])]);
    for req in [empty, nested] {
        let answer = client.write(&addr, req).await;
        world.event(format!("{name} -> n{to}: {answer:?}"));
    }
}
