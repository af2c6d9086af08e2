//! Where randomness comes from: the [`NonceSource`] the node supplies, for
//! handshake nonces ([`crate::net::auth`]) and fresh identities
//! ([`crate::identity`]). Production uses the operating system's
//! generator; tests and the simulation a seeded one, so the simulation owns
//! every random number the crate draws.

/// Where handshake nonces come from. Production uses the operating
/// system's generator; tests and the simulation use a seeded one.
pub trait NonceSource: Send + Sync + 'static {
    /// 32 bytes that the peer cannot predict.
    fn nonce(&self) -> [u8; 32];
}
