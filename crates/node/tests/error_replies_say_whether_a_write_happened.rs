//! An error reply says whether the write may have happened: a write that
//! reached the leader's log and lost its answer (the leader died
//! mid-request) answers a code of unknown outcome (`UNKNOWN` or `TIMEOUT`),
//! never `UNAVAILABLE`; a write that could not be sent anywhere answers a
//! code that says nothing was applied.

mod support;

use ballast_node::api::{AdminApi, ApiError, KvApi};
use ballast_node::resp::Reply;
use ballast_node::server::api_error_reply;
use std::collections::BTreeSet;
use support::cluster::{put, Cluster};
use support::{eventually, DEADLINE};

/// The first word of the RESP error reply for `e`: what a client matches.
fn code(e: &ApiError) -> String {
    match api_error_reply(e) {
        Reply::Error(text) => text.split(' ').next().unwrap_or_default().to_string(),
        other => panic!("not an error reply: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_whose_leader_dies_answers_unknown_never_unavailable() {
    let mut cluster = Cluster::start(3, |c| {
        // A leader keeps accepting writes for its lease (election_timeout_max)
        // after it lost its quorum: long enough for the write below to reach
        // its log on a slow machine.
        c.election_timeout_min_ms = 3000;
        c.election_timeout_max_ms = 6000;
        c.request_timeout_ms = 5000;
        c.leader_wait_ms = 3000;
    })
    .await;
    let leader = cluster.leader().await;
    let followers = cluster.followers(leader);
    let (sender, other) = (followers[0], followers[1]);

    // The sender becomes a learner: it forwards writes but its log does not
    // count toward a quorum, so the leader alone with it cannot commit.
    cluster
        .node(leader)
        .change_voters(BTreeSet::from([leader, other]), true)
        .await
        .expect("demote the sender to learner");
    eventually("the sender to know it is a learner", DEADLINE, || async {
        (cluster.node(sender).status().role == "learner").then_some(())
    })
    .await;
    cluster
        .node(sender)
        .write(put(0))
        .await
        .expect("a forwarded write commits while the quorum is there");

    cluster.kill(other).await;
    let appended_before = cluster.node(leader).status().last_log_index;
    let sender_node = cluster.node(sender).clone();
    let write = tokio::spawn(async move { sender_node.write(put(1)).await });
    // The write is in the leader's log, not committed (no quorum), and its
    // answer pending on the sender: now the leader dies.
    eventually(
        "the forwarded write to reach the leader's log",
        DEADLINE,
        || async { (cluster.node(leader).status().last_log_index > appended_before).then_some(()) },
    )
    .await;
    cluster.kill(leader).await;
    let error = write
        .await
        .expect("the write task ends")
        .expect_err("the write cannot have been answered OK");
    let c = code(&error);
    assert!(
        c == "UNKNOWN" || c == "TIMEOUT",
        "a write that reached the leader's log answered {c}: {error}"
    );

    // Nothing is reachable now: a new write is never sent, and says so.
    let error = cluster
        .node(sender)
        .write(put(2))
        .await
        .expect_err("no leader to write to");
    let c = code(&error);
    assert!(
        ["TRYAGAIN", "UNAVAILABLE", "SHUTDOWN", "ERR"].contains(&c.as_str()),
        "a write that was never sent answered {c}: {error}"
    );
    cluster.stop_all().await;
}
