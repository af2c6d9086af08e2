//! The handshake at the start of every connection.
//!
//! ```text
//! client -> server   Hello     { client_nonce }
//! server -> client   Challenge { server_nonce, server_proof }
//! client -> server   Proof     { client_proof }
//! server -> client   Verdict   (Welcome | Refused(reason))
//! ```
//!
//! With a secret, `server_proof = HMAC-SHA256(secret, "ballast-rpc-v1 server"
//! || client_nonce || server_nonce)` and `client_proof` the same with
//! `"ballast-rpc-v1 client"`. Each side checks the other's proof (in
//! constant time) and drops the connection on a mismatch, so neither side
//! talks to a peer that does not know the secret, and the secret itself
//! never crosses the wire. Fresh nonces on both sides make a recorded
//! handshake useless for a replay. Without a secret both proofs are
//! `None`; a node with a secret refuses a peer without one and vice versa.
//!
//! Identity ([`crate::identity`]): `Hello` and `Challenge` also carry each
//! end's node id, cluster id and incarnation (and the server's record of
//! the client's incarnation). After the secret checks, each end refuses a
//! peer of another cluster or one known under another incarnation; the
//! server refuses a client without a cluster, and a server without one
//! adopts the client's (durably, before `Welcome`). The client reports its
//! refusal in `Proof`, the server in `Verdict::RefusedIdentity`, so both
//! ends log every refusal.

use super::config::{NetConfig, Secret};
use super::error::NetError;
use super::frame;
use super::message::{Challenge, Hello, Proof, Verdict};
use crate::identity::{Id16, PeerIdentity};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt::Display;
use tokio::io::{AsyncRead, AsyncWrite};

const SERVER_LABEL: &[u8] = b"ballast-rpc-v1 server";
const CLIENT_LABEL: &[u8] = b"ballast-rpc-v1 client";

fn mac(secret: &Secret, label: &[u8], client: &[u8; 32], server: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut m = match Hmac::<Sha256>::new_from_slice(secret.expose()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    m.update(label);
    m.update(client);
    m.update(server);
    m
}

fn prove(secret: &Secret, label: &[u8], client: &[u8; 32], server: &[u8; 32]) -> [u8; 32] {
    mac(secret, label, client, server)
        .finalize()
        .into_bytes()
        .into()
}

fn verify(
    secret: &Secret,
    label: &[u8],
    client: &[u8; 32],
    server: &[u8; 32],
    proof: &[u8; 32],
) -> bool {
    mac(secret, label, client, server)
        .verify_slice(proof)
        .is_ok()
}

/// Runs the client side. Fails with [`NetError::Auth`] if the server does
/// not prove the same secret or refuses ours, and with
/// [`NetError::Identity`] / [`NetError::IdentityRefused`] if this node or
/// the server refuses the other's identity (both ends log it).
pub async fn client<S>(s: &mut S, cfg: &NetConfig, peer: impl Display) -> Result<(), NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = cfg.frame_bytes_max;
    let (client_nonce, ch) = hello(s, cfg, &peer).await?;
    let client_proof = client_proof(cfg, &client_nonce, &ch, &peer)?;
    // The server proved the secret (if any): its identity can be trusted
    // as far as the secret goes.
    let identity_refusal = match (&cfg.identity, &ch.identity) {
        (Some(me), Some(server)) => me
            .check_peer(server, false)
            .map_err(|e| NetError::IdentityStore(e.to_string()))?,
        _ => None,
    };
    frame::write(
        s,
        &Proof {
            client_proof,
            identity_refusal: identity_refusal.as_ref().map(ToString::to_string),
        },
        max,
        &peer,
    )
    .await?;
    if let Some(refusal) = identity_refusal {
        tracing::warn!(%peer, %refusal, "refusing a peer: cluster identity check failed");
        return Err(NetError::Identity(refusal));
    }
    match expect(frame::read(s, max, &peer).await?, "a verdict")? {
        Verdict::Welcome => Ok(()),
        Verdict::Refused(why) => Err(NetError::Auth(format!("{peer} refused us: {why}"))),
        Verdict::RefusedIdentity(why) => {
            tracing::warn!(%peer, refusal = %why, "a peer refused this node: cluster identity check failed");
            Err(NetError::IdentityRefused(format!(
                "{peer} refused us: {why}"
            )))
        }
    }
}

/// Asks the server who it is without opening a session: the first half of
/// the handshake (the server's proof is checked), then a hang-up. Returns
/// the server's identity and the incarnation it knows for this node.
pub async fn probe<S>(
    s: &mut S,
    cfg: &NetConfig,
    peer: impl Display,
) -> Result<(Option<PeerIdentity>, Option<Id16>), NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (client_nonce, ch) = hello(s, cfg, &peer).await?;
    client_proof(cfg, &client_nonce, &ch, &peer)?;
    Ok((ch.identity, ch.known_incarnation))
}

async fn hello<S>(
    s: &mut S,
    cfg: &NetConfig,
    peer: &impl Display,
) -> Result<([u8; 32], Challenge), NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = cfg.frame_bytes_max;
    let client_nonce = cfg.nonces.nonce();
    let identity = cfg.identity.as_ref().map(|i| i.me());
    frame::write(
        s,
        &Hello {
            client_nonce,
            identity,
        },
        max,
        peer,
    )
    .await?;
    let ch: Challenge = expect(frame::read(s, max, peer).await?, "a challenge")?;
    Ok((client_nonce, ch))
}

/// Checks the server's proof and makes ours.
fn client_proof(
    cfg: &NetConfig,
    client_nonce: &[u8; 32],
    ch: &Challenge,
    peer: &impl Display,
) -> Result<Option<[u8; 32]>, NetError> {
    match (&cfg.secret, ch.server_proof) {
        (None, None) => Ok(None),
        (Some(secret), Some(proof)) => {
            if !verify(secret, SERVER_LABEL, client_nonce, &ch.server_nonce, &proof) {
                return Err(NetError::Auth(format!(
                    "{peer} does not know our shared secret"
                )));
            }
            Ok(Some(prove(
                secret,
                CLIENT_LABEL,
                client_nonce,
                &ch.server_nonce,
            )))
        }
        (Some(_), None) => Err(NetError::Auth(format!(
            "{peer} has no shared secret configured but this node has one"
        ))),
        (None, Some(_)) => Err(NetError::Auth(format!(
            "{peer} requires a shared secret and this node has none"
        ))),
    }
}

/// Runs the server side. On failure the caller closes the connection.
pub async fn server<S>(s: &mut S, cfg: &NetConfig, peer: impl Display) -> Result<(), NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = cfg.frame_bytes_max;
    let hello: Hello = expect(frame::read(s, max, &peer).await?, "a hello")?;
    let server_nonce = cfg.nonces.nonce();
    let server_proof = cfg
        .secret
        .as_ref()
        .map(|secret| prove(secret, SERVER_LABEL, &hello.client_nonce, &server_nonce));
    let (identity, known_incarnation) = match &cfg.identity {
        Some(me) => (
            Some(me.me()),
            hello.identity.and_then(|c| me.known(c.node_id)),
        ),
        None => (None, None),
    };
    frame::write(
        s,
        &Challenge {
            server_nonce,
            server_proof,
            identity,
            known_incarnation,
        },
        max,
        &peer,
    )
    .await?;
    let proof: Option<Proof> = frame::read(s, max, &peer).await?;
    // The client may hang up here after rejecting our proof, or after a
    // probe (it only wanted our identity).
    let Some(proof) = proof else {
        return Err(NetError::Auth(format!(
            "{peer} hung up during the handshake (a probe, or it does not share our secret)"
        )));
    };
    if let Some(why) = proof.identity_refusal {
        tracing::warn!(%peer, refusal = %why, "a peer refused this node: cluster identity check failed");
        return Err(NetError::IdentityRefused(format!(
            "{peer} refused us: {why}"
        )));
    }
    let refusal = match (&cfg.secret, proof.client_proof) {
        (None, None) => None,
        (Some(secret), Some(p)) => {
            if verify(secret, CLIENT_LABEL, &hello.client_nonce, &server_nonce, &p) {
                None
            } else {
                Some("wrong shared secret")
            }
        }
        (Some(_), None) => Some("a shared secret is required"),
        (None, Some(_)) => Some("this node has no shared secret"),
    };
    if let Some(why) = refusal {
        // Best effort: the peer learns why; the connection closes anyway.
        let _ = frame::write(s, &Verdict::Refused(why.into()), max, &peer).await;
        return Err(NetError::Auth(format!("{peer}: {why}")));
    }
    // Only an authenticated client's identity counts: a node without a
    // cluster adopts the client's here, durably, before any request.
    if let (Some(me), Some(client)) = (&cfg.identity, &hello.identity) {
        let checked = me.check_peer(client, true);
        let refusal = match checked {
            Ok(None) => None,
            Ok(Some(r)) => Some(NetError::Identity(r)),
            Err(e) => Some(NetError::IdentityStore(e.to_string())),
        };
        if let Some(e) = refusal {
            tracing::warn!(%peer, refusal = %e, "refusing a peer: cluster identity check failed");
            let _ = frame::write(s, &Verdict::RefusedIdentity(e.to_string()), max, &peer).await;
            return Err(e);
        }
    }
    frame::write(s, &Verdict::Welcome, max, &peer).await
}

/// Whether `token` is `secret`, compared in constant time: both sides are
/// run through HMAC-SHA256 and the tags compared with `verify_slice`
/// (constant time), so neither the position of the first differing byte
/// nor the secret's length shows in the timing. For bearer tokens (the
/// admin port), where the secret does cross the wire (over loopback or a
/// network the operator trusts; put TLS in front otherwise).
pub fn token_matches(secret: &Secret, token: &[u8]) -> bool {
    const LABEL: &[u8] = b"ballast-admin-token";
    let tag = mac(secret, LABEL, &[0u8; 32], &[0u8; 32])
        .finalize()
        .into_bytes();
    mac(&Secret::new(token), LABEL, &[0u8; 32], &[0u8; 32])
        .verify_slice(&tag)
        .is_ok()
}

fn expect<T>(msg: Option<T>, what: &str) -> Result<T, NetError> {
    msg.ok_or_else(|| NetError::Protocol(format!("connection closed while expecting {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_secret_label_and_both_nonces() {
        let (a, b) = (Secret::new("alpha"), Secret::new("beta"));
        let (c, s) = ([1u8; 32], [2u8; 32]);
        let p = prove(&a, CLIENT_LABEL, &c, &s);
        assert!(verify(&a, CLIENT_LABEL, &c, &s, &p));
        assert!(!verify(&b, CLIENT_LABEL, &c, &s, &p));
        assert!(!verify(&a, SERVER_LABEL, &c, &s, &p));
        assert!(!verify(&a, CLIENT_LABEL, &s, &c, &p));
        assert!(!verify(&a, CLIENT_LABEL, &c, &[3u8; 32], &p));
    }

    #[test]
    fn tokens_match_only_the_secret() {
        let secret = Secret::new("0123456789abcdef");
        assert!(token_matches(&secret, b"0123456789abcdef"));
        assert!(!token_matches(&secret, b"0123456789abcdeF"));
        assert!(!token_matches(&secret, b"0123456789abcde"));
        assert!(!token_matches(&secret, b"0123456789abcdef0"));
        assert!(!token_matches(&secret, b""));
    }
}
