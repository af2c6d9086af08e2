//! One frame: `u32` big-endian length `n`, then `n` bytes: a wire version
//! byte and a bincode 2.x payload (standard configuration). A frame whose
//! `n` is 0 or above `frame_bytes_max` is refused before a byte of it is
//! buffered; a sender refuses to send one.

use super::error::NetError;
use super::message::WIRE_VERSION;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Display;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;

/// Bincode's own ceiling on what one decode may claim. Frames are already
/// bounded by `frame_bytes_max`; this guards bincode's preallocation too.
const DECODE_BYTES_MAX: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_BYTES_MAX>()
}

/// Encodes `msg` as one complete frame (prefix included), refusing one
/// over `frame_bytes_max`.
pub fn encode<T: Serialize>(msg: &T, frame_bytes_max: u32) -> Result<Vec<u8>, NetError> {
    let mut out = vec![0u8; LEN_BYTES];
    out.push(WIRE_VERSION);
    bincode::serde::encode_into_std_write(msg, &mut out, config())
        .map_err(|e| NetError::Malformed(format!("cannot encode: {e}")))?;
    let n = out.len() - LEN_BYTES;
    if n as u64 > u64::from(frame_bytes_max) {
        return Err(NetError::FrameTooLarge {
            len: n as u64,
            max: frame_bytes_max,
        });
    }
    out[..LEN_BYTES].copy_from_slice(&(n as u32).to_be_bytes());
    Ok(out)
}

/// Decodes a frame's body (version byte and payload, no prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, NetError> {
    let (&version, payload) = body
        .split_first()
        .ok_or_else(|| NetError::Malformed("empty frame".into()))?;
    if version != WIRE_VERSION {
        return Err(NetError::Version { found: version });
    }
    let (msg, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| NetError::Malformed(format!("cannot decode: {e}")))?;
    if used != payload.len() {
        return Err(NetError::Malformed(format!(
            "{} trailing bytes after the message",
            payload.len() - used
        )));
    }
    Ok(msg)
}

/// Writes `msg` as one frame.
pub async fn write<W, T>(
    w: &mut W,
    msg: &T,
    frame_bytes_max: u32,
    peer: impl Display,
) -> Result<(), NetError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = encode(msg, frame_bytes_max)?;
    w.write_all(&bytes)
        .await
        .map_err(|e| NetError::io(&peer, e))?;
    w.flush().await.map_err(|e| NetError::io(&peer, e))
}

/// Reads one frame. `Ok(None)` when the peer closed the connection cleanly
/// between frames.
pub async fn read<R, T>(
    r: &mut R,
    frame_bytes_max: u32,
    peer: impl Display,
) -> Result<Option<T>, NetError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut prefix = [0u8; LEN_BYTES];
    // A clean close is EOF before the first byte of a prefix; EOF inside a
    // frame is an error.
    let first = r
        .read(&mut prefix[..1])
        .await
        .map_err(|e| NetError::io(&peer, e))?;
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut prefix[1..])
        .await
        .map_err(|e| NetError::io(&peer, e))?;
    let n = u32::from_be_bytes(prefix);
    if n == 0 {
        return Err(NetError::Malformed("frame of length 0".into()));
    }
    if n > frame_bytes_max {
        return Err(NetError::FrameTooLarge {
            len: u64::from(n),
            max: frame_bytes_max,
        });
    }
    // Bounded by the check above.
    let mut body = vec![0u8; n as usize];
    r.read_exact(&mut body)
        .await
        .map_err(|e| NetError::io(&peer, e))?;
    decode(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_damage_is_refused() {
        let msg = (7u64, "hello".to_string(), vec![1u8, 2, 3]);
        let bytes = encode(&msg, 1 << 16).expect("encode");
        let n = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(n, bytes.len() - 4);
        let back: (u64, String, Vec<u8>) = decode(&bytes[4..]).expect("decode");
        assert_eq!(back, msg);

        let mut wrong_version = bytes[4..].to_vec();
        wrong_version[0] = 9;
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>(&wrong_version),
            Err(NetError::Version { found: 9 })
        ));
        let truncated = &bytes[4..bytes.len() - 1];
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>(truncated),
            Err(NetError::Malformed(_))
        ));
        let mut trailing = bytes[4..].to_vec();
        trailing.push(0);
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>(&trailing),
            Err(NetError::Malformed(_))
        ));
        assert!(matches!(
            encode(&vec![0u8; 100], 50),
            Err(NetError::FrameTooLarge { max: 50, .. })
        ));
    }
}
