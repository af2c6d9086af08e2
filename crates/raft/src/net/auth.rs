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

use super::frame;
use super::message::{Challenge, Hello, Proof, Verdict};
use super::{NetConfig, NetError, Secret};
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
/// not prove the same secret or refuses ours.
pub async fn client<S>(s: &mut S, cfg: &NetConfig, peer: impl Display) -> Result<(), NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = cfg.max_frame_bytes;
    let client_nonce = cfg.nonces.nonce();
    frame::write(s, &Hello { client_nonce }, max, &peer).await?;
    let ch: Challenge = expect(frame::read(s, max, &peer).await?, "a challenge")?;
    let client_proof = match (&cfg.secret, ch.server_proof) {
        (None, None) => None,
        (Some(secret), Some(proof)) => {
            if !verify(
                secret,
                SERVER_LABEL,
                &client_nonce,
                &ch.server_nonce,
                &proof,
            ) {
                return Err(NetError::Auth(format!(
                    "{peer} does not know our shared secret"
                )));
            }
            Some(prove(secret, CLIENT_LABEL, &client_nonce, &ch.server_nonce))
        }
        (Some(_), None) => {
            return Err(NetError::Auth(format!(
                "{peer} has no shared secret configured but this node has one"
            )))
        }
        (None, Some(_)) => {
            return Err(NetError::Auth(format!(
                "{peer} requires a shared secret and this node has none"
            )))
        }
    };
    frame::write(s, &Proof { client_proof }, max, &peer).await?;
    match expect(frame::read(s, max, &peer).await?, "a verdict")? {
        Verdict::Welcome => Ok(()),
        Verdict::Refused(why) => Err(NetError::Auth(format!("{peer} refused us: {why}"))),
    }
}

/// Runs the server side. On failure the caller closes the connection.
pub async fn server<S>(s: &mut S, cfg: &NetConfig, peer: impl Display) -> Result<(), NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = cfg.max_frame_bytes;
    let hello: Hello = expect(frame::read(s, max, &peer).await?, "a hello")?;
    let server_nonce = cfg.nonces.nonce();
    let server_proof = cfg
        .secret
        .as_ref()
        .map(|secret| prove(secret, SERVER_LABEL, &hello.client_nonce, &server_nonce));
    frame::write(
        s,
        &Challenge {
            server_nonce,
            server_proof,
        },
        max,
        &peer,
    )
    .await?;
    let proof: Option<Proof> = frame::read(s, max, &peer).await?;
    // The client may hang up here after rejecting our proof.
    let Some(proof) = proof else {
        return Err(NetError::Auth(format!(
            "{peer} hung up during the handshake (it may not share our secret)"
        )));
    };
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
    match refusal {
        None => frame::write(s, &Verdict::Welcome, max, &peer).await,
        Some(why) => {
            // Best effort: the peer learns why; the connection closes anyway.
            let _ = frame::write(s, &Verdict::Refused(why.into()), max, &peer).await;
            Err(NetError::Auth(format!("{peer}: {why}")))
        }
    }
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
