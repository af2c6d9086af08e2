//! Redis's integer grammar (`string2ll`), shared by protocol headers and
//! integer arguments. Everything here is pure.

/// Parses a signed 64-bit decimal integer exactly as Redis's `string2ll`
/// does: an optional `-`, then digits without leading zeros (except `0`
/// itself), no `+`, no spaces, no overflow. Protocol headers and integer
/// arguments (INCRBY, EXPIRE, ...) both use it, so `01` and ` 1` are
/// refused everywhere, as in Redis.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    match digits {
        [] => return None,
        [b'0'] => return if negative { None } else { Some(0) },
        [b'0', ..] => return None,
        _ => {}
    }
    // Accumulate negatively so that i64::MIN, whose magnitude has no
    // positive i64, parses without a special case.
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_sub(i64::from(byte - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_i64;

    #[test]
    fn parse_i64_accepts_what_redis_string2ll_accepts() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"42"), Some(42));
        assert_eq!(parse_i64(b"-42"), Some(-42));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn parse_i64_refuses_what_redis_string2ll_refuses() {
        for text in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1.0",
            b"abc",
            b"9223372036854775808",
            b"-9223372036854775809",
        ] {
            assert_eq!(parse_i64(text), None, "{:?}", String::from_utf8_lossy(text));
        }
    }
}
