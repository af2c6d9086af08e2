//! The sequential specification: one register per key, as a Redis string.
//!
//! An operation applied to the register's state either is allowed with the
//! reply it got (and gives the next state) or is not. A reply that is not
//! known (the outcome was unknown) allows whatever the operation would have
//! replied.

use serde::{Deserialize, Serialize};

/// A value: the bytes of a Redis string.
pub type Value = Vec<u8>;

/// A register's state: `None` when the key is absent.
pub type Register = Option<Value>;

/// An operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// GET.
    Read,
    /// SET (or one key of an MSET).
    Write(Value),
    /// DEL of one key; replies whether it existed.
    Delete,
    /// CAS: set to `new` only if the key holds `expected`.
    Cas {
        /// The value the key must hold.
        expected: Value,
        /// The value to store.
        new: Value,
    },
    /// INCRBY: add `delta` to the decimal integer held (absent counts as 0).
    Incr(i64),
}

/// A reply that was received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ret {
    /// GET's value (`None`: the key was absent).
    Read(Option<Value>),
    /// SET's `OK`.
    Written,
    /// DEL's count for this key: whether it existed.
    Deleted(bool),
    /// CAS: whether it swapped.
    Cas(bool),
    /// INCRBY's new value, or `None` for its error reply (the value is not a
    /// decimal integer, or the sum overflows): nothing changed.
    Incr(Option<i64>),
}

/// What `op` replies on `state`, and the state after it.
pub fn apply(state: &Register, op: &Op) -> (Ret, Register) {
    match op {
        Op::Read => (Ret::Read(state.clone()), state.clone()),
        Op::Write(v) => (Ret::Written, Some(v.clone())),
        Op::Delete => (Ret::Deleted(state.is_some()), None),
        Op::Cas { expected, new } => {
            if state.as_ref() == Some(expected) {
                (Ret::Cas(true), Some(new.clone()))
            } else {
                (Ret::Cas(false), state.clone())
            }
        }
        Op::Incr(delta) => {
            let current = match state {
                None => Some(0i64),
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok()),
            };
            match current.and_then(|n| n.checked_add(*delta)) {
                Some(n) => (Ret::Incr(Some(n)), Some(n.to_string().into_bytes())),
                None => (Ret::Incr(None), state.clone()),
            }
        }
    }
}

/// The state after `op` if it may have replied `ret` on `state` (`None`
/// for `ret`: the reply is unknown, anything goes); `None` if it may not.
pub fn step(state: &Register, op: &Op, ret: Option<&Ret>) -> Option<Register> {
    let (would, next) = apply(state, op);
    match ret {
        Some(r) if *r != would => None,
        _ => Some(next),
    }
}

/// True for operations that cannot change the register whatever it holds;
/// with an unknown outcome they constrain nothing and can be left out.
pub fn is_read_only(op: &Op) -> bool {
    matches!(op, Op::Read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incr_counts_from_zero_and_refuses_non_integers_and_overflow() {
        assert_eq!(
            apply(&None, &Op::Incr(2)),
            (Ret::Incr(Some(2)), Some(b"2".to_vec()))
        );
        let x = Some(b"x".to_vec());
        assert_eq!(apply(&x, &Op::Incr(1)), (Ret::Incr(None), x.clone()));
        let max = Some(i64::MAX.to_string().into_bytes());
        assert_eq!(apply(&max, &Op::Incr(1)), (Ret::Incr(None), max.clone()));
    }

    #[test]
    fn cas_swaps_only_on_the_expected_value() {
        let a = Some(b"a".to_vec());
        let op = Op::Cas {
            expected: b"a".to_vec(),
            new: b"b".to_vec(),
        };
        assert_eq!(apply(&a, &op), (Ret::Cas(true), Some(b"b".to_vec())));
        assert_eq!(apply(&None, &op), (Ret::Cas(false), None));
        assert_eq!(step(&None, &op, Some(&Ret::Cas(true))), None);
        assert_eq!(step(&None, &op, None), Some(None));
    }
}
