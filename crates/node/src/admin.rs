//! The admin HTTP port: metrics, status and membership changes, for
//! operators and scripts (HTTP/1.1, served with hyper).
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text format 0.0.4: Raft state, engine counters, RESP counters and latency histograms |
//! | `GET /status` | JSON of [`NodeStatus`] |
//! | `POST /membership/learner` with `id`, `raft_addr`, `client_addr` | adds a learner and waits until it caught up |
//! | `POST /membership/promote` with `id` | makes a learner a voter |
//! | `POST /membership/remove` with `id` | removes a voter from the cluster |
//!
//! Membership parameters come either as a JSON object body
//! (`{"id": 4, "raft_addr": "127.0.0.1:7004", "client_addr": "127.0.0.1:6004"}`)
//! or as a query string, in the URL or as the body
//! (`/membership/learner?id=4&raft_addr=127.0.0.1%3A7004&client_addr=127.0.0.1%3A6004`).
//! Success answers `200` with `{"ok": true, "status": {...}}`.
//!
//! Authentication: when the node has a `secret`, the membership endpoints
//! need it as a bearer token (`Authorization: Bearer <secret>`, compared in
//! constant time); without it they answer `401`. `/metrics` and `/status`
//! stay open: they change nothing and monitoring scrapes them. A node whose
//! `admin_addr` is not loopback must have a `secret` (config validation).
//!
//! Errors answer JSON `{"error": "<what went wrong and what to do>"}` with:
//! `400` bad parameters or a request the node refuses as invalid, `401`
//! a membership change without the right bearer token, `404`
//! unknown path or a node id that is not a member, `405` wrong method,
//! `409` a change that does not apply to the current membership (promote
//! a voter, remove the last voter, remove a learner), `413` a body over
//! [`BODY_BYTES_MAX`], `503` no leader / shutting down / unavailable
//! (nothing was changed: retry), `504` timed out or the answer was lost
//! (the outcome is unknown: check `/status`).
//!
//! Bounds: at most [`CONNECTIONS_MAX`] connections (more wait in the
//! kernel's backlog), request heads must arrive within
//! [`HEADER_READ_TIMEOUT_MS`], bodies are capped at [`BODY_BYTES_MAX`].

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value as Json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::api::{AdminApi, ApiError, NodeStatus};
use crate::server::metrics::seconds;
use crate::server::Metrics;
use ballast_raft::net::{auth, Secret};
use ballast_raft::NodeId;

/// Largest request body accepted.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Most admin connections served at once.
pub const CONNECTIONS_MAX: usize = 64;
/// How long a client may take to send a request head.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// How long shutdown waits for requests in progress.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;
/// Longest address accepted for a learner.
const ADDR_BYTES_MAX: usize = 256;

const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves the admin port on `listener` until `shutdown` completes.
/// `metrics` are the RESP server's ([`crate::server::RespServer::metrics`]).
/// Membership changes need [`AdminApi::admin_secret`] as a bearer token
/// when it is set.
pub async fn serve<A: AdminApi>(
    api: Arc<A>,
    metrics: Arc<Metrics>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let secret = api.admin_secret();
    serve_with_secret(api, metrics, listener, shutdown, secret).await
}

/// [`serve`] with the secret given here instead of asked of `api`
/// (`None`: membership changes are open, as on a loopback-only node
/// without a secret).
pub async fn serve_with_secret<A: AdminApi>(
    api: Arc<A>,
    metrics: Arc<Metrics>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    secret: Option<Secret>,
) -> std::io::Result<()> {
    let secret = Arc::new(secret);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // At the limit, stop accepting until a connection finishes.
        let room = connections.len() < CONNECTIONS_MAX;
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if room => match accepted {
                Ok((stream, _peer)) => {
                    let api = api.clone();
                    let metrics = metrics.clone();
                    let secret = secret.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let api = api.clone();
                            let metrics = metrics.clone();
                            let secret = secret.clone();
                            async move {
                                Ok::<_, Infallible>(
                                    handle(&*api, &metrics, (*secret).as_ref(), request).await,
                                )
                            }
                        });
                        let served = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS))
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(error) = served {
                            tracing::debug!(%error, "admin connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting an admin connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
    Ok(())
}

/// An error answer: what the status means, in words a person can act on.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        let status = match error {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            // The change may or may not have been applied: a script must
            // check /status, not retry blindly as after a 503.
            ApiError::Timeout { .. } | ApiError::Unknown(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::NoLeader | ApiError::ShuttingDown | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        Failure::new(status, error.to_string())
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(status: StatusCode, body: &Json) -> Response<Full<Bytes>> {
    respond(status, "application/json", body.to_string())
}

/// Why a membership request is not authorized, or `None` if it is: with a
/// secret, the request must carry `Authorization: Bearer <secret>`.
fn unauthorized(secret: Option<&Secret>, request: &Request<Incoming>) -> Option<&'static str> {
    let secret = secret?;
    let Some(header) = request.headers().get(AUTHORIZATION) else {
        return Some(
            "membership changes need the cluster's shared secret: send `Authorization: Bearer <secret>` (the `secret` of the node's config)",
        );
    };
    let token = header
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .or_else(|| header.as_bytes().strip_prefix(b"bearer "));
    match token {
        Some(token) if auth::token_matches(secret, token) => None,
        Some(_) => Some(
            "wrong bearer token: membership changes need the cluster's shared secret (the `secret` of the node's config)",
        ),
        None => Some(
            "the Authorization header must be `Bearer <secret>` with the cluster's shared secret",
        ),
    }
}

async fn handle<A: AdminApi>(
    api: &A,
    metrics: &Metrics,
    secret: Option<&Secret>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let (allowed, is_get) = match path.as_str() {
        "/metrics" | "/status" => (Method::GET, true),
        "/membership/learner" | "/membership/promote" | "/membership/remove" => {
            (Method::POST, false)
        }
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": format!(
                    "no such endpoint {path}; try GET /metrics, GET /status, POST /membership/learner, /membership/promote or /membership/remove"
                )}),
            )
        }
    };
    if request.method() != allowed && !(is_get && request.method() == Method::HEAD) {
        let mut response = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": format!("{path} accepts {allowed} only")}),
        );
        response.headers_mut().insert(
            ALLOW,
            HeaderValue::from_static(if is_get { "GET, HEAD" } else { "POST" }),
        );
        return response;
    }
    // Checked before the body is read, so that an unauthenticated client
    // costs no more than its headers.
    if !is_get {
        if let Some(why) = unauthorized(secret, &request) {
            tracing::warn!(%path, "admin: refused an unauthenticated membership change");
            let mut response = json_response(StatusCode::UNAUTHORIZED, &json!({"error": why}));
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ballast-admin\""),
            );
            return response;
        }
    }
    let result = match path.as_str() {
        "/metrics" => {
            return respond(
                StatusCode::OK,
                PROMETHEUS_CONTENT_TYPE,
                prometheus(&api.status(), &api.engine_stats(), metrics),
            )
        }
        "/status" => return json_response(StatusCode::OK, &status_json(&api.status_with_hash())),
        _ => membership(api, &path, request).await,
    };
    match result {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"ok": true, "status": status_json(&api.status())}),
        ),
        Err(failure) => json_response(failure.status, &json!({"error": failure.message})),
    }
}

async fn membership<A: AdminApi>(
    api: &A,
    path: &str,
    request: Request<Incoming>,
) -> Result<(), Failure> {
    let params = params(request).await?;
    let id = node_id(&params)?;
    match path {
        "/membership/learner" => {
            let raft_addr = address(&params, "raft_addr")?;
            let client_addr = address(&params, "client_addr")?;
            api.add_learner(id, raft_addr, client_addr).await?;
        }
        "/membership/promote" => {
            let status = api.status();
            require_role(&status, id, Role::Learner)?;
            let mut voters: BTreeSet<NodeId> = status.voters.iter().copied().collect();
            voters.insert(id);
            api.change_voters(voters, true).await?;
        }
        _ => {
            let status = api.status();
            require_role(&status, id, Role::Voter)?;
            if status.voters.len() == 1 {
                return Err(Failure::new(
                    StatusCode::CONFLICT,
                    format!("node {id} is the last voter; a cluster needs at least one"),
                ));
            }
            let voters: BTreeSet<NodeId> =
                status.voters.iter().copied().filter(|&v| v != id).collect();
            api.change_voters(voters, false).await?;
        }
    }
    Ok(())
}

/// The role a membership change needs its node to have now: promote
/// takes a learner, remove takes a voter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Learner,
    Voter,
}

/// Checks that node `id` has the role `needed`: having the other role is a
/// conflict (`409`), having neither is not found (`404`); each text says
/// what to do.
fn require_role(status: &NodeStatus, id: NodeId, needed: Role) -> Result<(), Failure> {
    let (voter, learner) = (status.voters.contains(&id), status.learners.contains(&id));
    let (has_needed, has_other, conflict, not_found) = match needed {
        Role::Learner => (
            learner,
            voter,
            "is already a voter",
            "is not a learner; add it first with POST /membership/learner",
        ),
        Role::Voter => (
            voter,
            learner,
            "is a learner; this node can only remove voters so far",
            "is not a member",
        ),
    };
    if has_other {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            format!("node {id} {conflict}"),
        ));
    }
    if !has_needed {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("node {id} {not_found}"),
        ));
    }
    Ok(())
}

/// The request's parameters: a JSON object body, a form body, or the URL
/// query string.
async fn params(request: Request<Incoming>) -> Result<BTreeMap<String, Json>, Failure> {
    let query = request.uri().query().unwrap_or_default().to_string();
    let body = Limited::new(request.into_body(), BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is over {BODY_BYTES_MAX} bytes"),
                )
            } else {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body failed: {error}"),
                )
            }
        })?
        .to_bytes();
    let body = std::str::from_utf8(&body)
        .map_err(|_| Failure::new(StatusCode::BAD_REQUEST, "the body is not UTF-8"))?
        .trim();
    if body.starts_with('{') {
        return match serde_json::from_str::<Json>(body) {
            Ok(Json::Object(map)) => Ok(map.into_iter().collect()),
            Ok(_) | Err(_) => Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "the body is not a JSON object",
            )),
        };
    }
    let form = if body.is_empty() {
        query.as_str()
    } else {
        body
    };
    let mut params = BTreeMap::new();
    for pair in form.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(form_decode(name)?, Json::String(form_decode(value)?));
    }
    Ok(params)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` and `%XX`).
fn form_decode(text: &str) -> Result<String, Failure> {
    let bad = || {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("bad percent-encoding in {text:?}"),
        )
    };
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next().ok_or_else(bad)?, input.next().ok_or_else(bad)?];
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

fn node_id(params: &BTreeMap<String, Json>) -> Result<NodeId, Failure> {
    let missing = || {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "missing parameter id (a node id, an unsigned integer)",
        )
    };
    let invalid = || {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "parameter id must be an unsigned 64-bit integer",
        )
    };
    match params.get("id").ok_or_else(missing)? {
        Json::Number(number) => number.as_u64().ok_or_else(invalid),
        Json::String(text) => text.parse().map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

fn address(params: &BTreeMap<String, Json>, name: &str) -> Result<String, Failure> {
    match params.get(name) {
        Some(Json::String(addr)) if !addr.is_empty() && addr.len() <= ADDR_BYTES_MAX => {
            Ok(addr.clone())
        }
        Some(_) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("parameter {name} must be a host:port string of 1 to {ADDR_BYTES_MAX} bytes"),
        )),
        None => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("missing parameter {name} (host:port)"),
        )),
    }
}

/// `/status`'s JSON.
pub fn status_json(status: &NodeStatus) -> Json {
    json!({
        "id": status.id,
        "role": status.role,
        "term": status.term,
        "leader": status.leader.as_ref().map(|(id, addr)| json!({"id": id, "client_addr": addr})),
        "last_log_index": status.last_log_index,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "voters": status.voters,
        "learners": status.learners,
        "preset": status.preset,
        "state_hash": status.state_hash,
    })
}

const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

/// The whole `/metrics` text.
pub fn prometheus(
    status: &NodeStatus,
    engine: &ballast_storage::StatsSnapshot,
    metrics: &Metrics,
) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |value: u64| vec![(String::new(), value.to_string())];
    let index = |index: Option<u64>| one(index.unwrap_or(0));

    metric(
        "ballast_node_id",
        "gauge",
        "This node's id.",
        &one(status.id),
    );
    metric(
        "ballast_raft_term",
        "gauge",
        "The current Raft term.",
        &one(status.term),
    );
    let roles: Vec<(String, String)> = ROLES
        .iter()
        .map(|role| {
            (
                format!("{{role=\"{role}\"}}"),
                u64::from(status.role == *role).to_string(),
            )
        })
        .collect();
    metric(
        "ballast_raft_role",
        "gauge",
        "1 for this node's Raft role, 0 for the others.",
        &roles,
    );
    metric(
        "ballast_raft_leader_known",
        "gauge",
        "1 when this node knows a leader.",
        &one(u64::from(status.leader.is_some())),
    );
    metric(
        "ballast_raft_leader_id",
        "gauge",
        "The leader's node id (0 when none is known; see ballast_raft_leader_known).",
        &one(status.leader.as_ref().map_or(0, |(id, _)| *id)),
    );
    metric(
        "ballast_raft_last_log_index",
        "gauge",
        "The last log index this node has (0: none).",
        &index(status.last_log_index),
    );
    metric(
        "ballast_raft_commit_index",
        "gauge",
        "The last committed index this node knows (0: none).",
        &index(status.commit_index),
    );
    metric(
        "ballast_raft_applied_index",
        "gauge",
        "The last index applied to the state machine (0: none).",
        &index(status.applied_index),
    );
    metric(
        "ballast_raft_voters",
        "gauge",
        "Voters in the current membership.",
        &one(status.voters.len() as u64),
    );
    metric(
        "ballast_raft_learners",
        "gauge",
        "Learners in the current membership.",
        &one(status.learners.len() as u64),
    );
    metric(
        "ballast_proposed_entries_total",
        "counter",
        "Log entries this node proposed as leader; each carries one or more writes.",
        &one(status.proposed_entries),
    );
    metric(
        "ballast_proposed_writes_total",
        "counter",
        "Writes carried by the entries this node proposed (divide by ballast_proposed_entries_total for writes per entry).",
        &one(status.proposed_writes),
    );

    let counters: [(&str, &str, u64); 14] = [
        (
            "ballast_engine_writes_total",
            "Acknowledged write batches.",
            engine.writes,
        ),
        (
            "ballast_engine_write_bytes_total",
            "Bytes of keys and values written.",
            engine.write_bytes,
        ),
        (
            "ballast_engine_wal_bytes_total",
            "Bytes appended to the engine WAL.",
            engine.wal_bytes,
        ),
        (
            "ballast_engine_wal_fsyncs_total",
            "Engine WAL fdatasyncs.",
            engine.wal_fsyncs,
        ),
        (
            "ballast_engine_group_commits_total",
            "Group commits.",
            engine.groups,
        ),
        (
            "ballast_engine_stalls_total",
            "Times a writer waited for flush or compaction.",
            engine.stalls,
        ),
        (
            "ballast_engine_flushes_total",
            "Memtable flushes.",
            engine.flushes,
        ),
        (
            "ballast_engine_flush_bytes_total",
            "Bytes written by flushes.",
            engine.flush_bytes,
        ),
        (
            "ballast_engine_compactions_total",
            "Compactions run.",
            engine.compactions,
        ),
        (
            "ballast_engine_compaction_read_bytes_total",
            "Bytes read by compactions.",
            engine.compaction_bytes_in,
        ),
        (
            "ballast_engine_compaction_written_bytes_total",
            "Bytes written by compactions.",
            engine.compaction_bytes_out,
        ),
        ("ballast_engine_gets_total", "Point lookups.", engine.gets),
        (
            "ballast_engine_cache_hits_total",
            "Block cache hits.",
            engine.cache_hits,
        ),
        (
            "ballast_engine_cache_misses_total",
            "Block cache misses.",
            engine.cache_misses,
        ),
    ];
    for (name, help, value) in counters {
        metric(name, "counter", help, &one(value));
    }
    metric(
        "ballast_engine_stall_seconds_total",
        "counter",
        "Time writers spent stalled.",
        &[(String::new(), seconds(engine.stall_us))],
    );
    metric(
        "ballast_engine_immutable_memtables",
        "gauge",
        "Frozen memtables waiting for flush.",
        &one(engine.immutable_memtables),
    );
    let per_level = |field: fn(&ballast_storage::LevelStats) -> u64| -> Vec<(String, String)> {
        engine
            .levels
            .iter()
            .enumerate()
            .map(|(level, stats)| (format!("{{level=\"{level}\"}}"), field(stats).to_string()))
            .collect()
    };
    metric(
        "ballast_engine_level_files",
        "gauge",
        "SSTables per level.",
        &per_level(|l| l.files),
    );
    metric(
        "ballast_engine_level_bytes",
        "gauge",
        "SSTable bytes per level.",
        &per_level(|l| l.bytes),
    );
    let (p50, p99, p999) = engine.write_latency_us_p50_p99_p999;
    let quantiles: Vec<(String, String)> = [("0.5", p50), ("0.99", p99), ("0.999", p999)]
        .iter()
        .map(|(quantile, us)| (format!("{{quantile=\"{quantile}\"}}"), seconds(*us)))
        .collect();
    metric(
        "ballast_engine_write_latency_seconds",
        "gauge",
        "Engine write latency quantiles since open.",
        &quantiles,
    );
    metrics.write_prometheus(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_handles_plus_and_percent() {
        assert_eq!(form_decode("127.0.0.1%3A7004").unwrap(), "127.0.0.1:7004");
        assert_eq!(form_decode("a+b").unwrap(), "a b");
        assert!(form_decode("%4").is_err());
        assert!(form_decode("%zz").is_err());
    }
}
