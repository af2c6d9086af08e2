//! INCRBYFLOAT's arithmetic, as Redis 7 does it: both numbers read as
//! `strtold` reads them into an x87 80-bit long double, added in that
//! precision, and printed as `%.17Lf` with trailing zeros (and a bare
//! dot) removed. Done in software (`rustc_apfloat`, LLVM's APFloat), so
//! every replica computes the same bits whatever its CPU; pure.
//!
//! Not served: hexadecimal floats (`0x1p3`), which `strtold` also reads;
//! they are refused as "not a valid float".

use num_bigint::BigUint;
use rustc_apfloat::ieee::X87DoubleExtended;
use rustc_apfloat::{Float, Round};

/// Redis's `MAX_LONG_DOUBLE_CHARS`: longer texts are not valid floats.
const FLOAT_TEXT_BYTES_MAX: usize = 5 * 1024;

/// Fractional digits of Redis's human-friendly long double text.
const FRACTION_DIGITS: u32 = 17;

/// Why INCRBYFLOAT refused; the texts are Redis's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FloatError {
    /// The stored value or the increment is not a number Redis reads.
    NotAFloat,
    /// The sum is infinite or not a number.
    NanOrInfinity,
}

impl FloatError {
    pub(super) fn text(self) -> &'static str {
        match self {
            FloatError::NotAFloat => "value is not a valid float",
            FloatError::NanOrInfinity => "increment would produce NaN or Infinity",
        }
    }
}

/// Whether `text` is a float Redis accepts (what the node checks where an
/// INCRBYFLOAT enters, so that a bad increment never reaches the log).
pub fn is_redis_float(text: &[u8]) -> bool {
    parse(text).is_some()
}

/// Redis's `string2ld`: no leading space, nothing after the number, no
/// NaN, and no overflow to infinity or underflow to zero.
fn parse(text: &[u8]) -> Option<X87DoubleExtended> {
    if text.is_empty() || text.len() >= FLOAT_TEXT_BYTES_MAX {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let (negative, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        let inf = X87DoubleExtended::INFINITY;
        return Some(if negative { -inf } else { inf });
    }
    if !is_decimal(unsigned.as_bytes()) {
        return None;
    }
    let value = X87DoubleExtended::from_str_r(unsigned, Round::NearestTiesToEven)
        .ok()?
        .value;
    // strtold's ERANGE: an overflow to infinity, or an underflow to zero
    // of a number that is not zero, is refused.
    let nonzero_digits = unsigned
        .bytes()
        .take_while(|b| *b != b'e' && *b != b'E')
        .any(|b| (b'1'..=b'9').contains(&b));
    if value.is_infinite() || (value.is_zero() && nonzero_digits) {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// `digits[.digits][e[+-]digits]` or `.digits[...]`: strtold's decimal
/// form without a sign.
fn is_decimal(text: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let whole = digits(text);
    let mut at = whole;
    let mut fraction = 0;
    if text.get(at) == Some(&b'.') {
        fraction = digits(&text[at + 1..]);
        at += 1 + fraction;
    }
    if whole + fraction == 0 {
        return false;
    }
    if matches!(text.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(text.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent = digits(&text[at..]);
        if exponent == 0 {
            return false;
        }
        at += exponent;
    }
    at == text.len()
}

/// INCRBYFLOAT: `current` (a missing key is 0) plus `increment`, as
/// Redis's text.
pub(super) fn incr_by_float(
    current: Option<&[u8]>,
    increment: &[u8],
) -> Result<String, FloatError> {
    let value = match current {
        None => X87DoubleExtended::ZERO,
        Some(text) => parse(text).ok_or(FloatError::NotAFloat)?,
    };
    let increment = parse(increment).ok_or(FloatError::NotAFloat)?;
    let sum = (value + increment).value;
    if sum.is_nan() || sum.is_infinite() {
        return Err(FloatError::NanOrInfinity);
    }
    Ok(human_text(sum))
}

/// `%.17Lf` of a finite value, rounded half to even from its exact
/// binary value as glibc's printf does, then trailing zeros and a bare
/// dot removed, and `-0` written `0` (Redis's `ld2string` in human mode).
fn human_text(value: X87DoubleExtended) -> String {
    let bits = value.to_bits();
    let negative = (bits >> 79) & 1 == 1;
    let biased_exponent = ((bits >> 64) & 0x7fff) as i64;
    // The x87 format keeps its integer bit: value = mantissa * 2^exponent.
    let mantissa = bits as u64;
    let exponent = biased_exponent.max(1) - 16383 - 63;
    // value * 10^17 = mantissa * 5^17 * 2^(exponent + 17).
    let scaled = BigUint::from(mantissa) * BigUint::from(5u32).pow(FRACTION_DIGITS);
    let shift = exponent + i64::from(FRACTION_DIGITS);
    let units = if shift >= 0 {
        scaled << (shift as u64)
    } else {
        let shift = shift.unsigned_abs();
        let quotient = &scaled >> shift;
        let remainder = &scaled - (&quotient << shift);
        let half = BigUint::from(1u32) << (shift - 1);
        if remainder > half || (remainder == half && quotient.bit(0)) {
            quotient + 1u32
        } else {
            quotient
        }
    };
    let mut digits = units.to_string();
    let fraction_digits = FRACTION_DIGITS as usize;
    if digits.len() <= fraction_digits {
        digits.insert_str(0, &"0".repeat(fraction_digits + 1 - digits.len()));
    }
    let (whole, fraction) = digits.split_at(digits.len() - fraction_digits);
    let fraction = fraction.trim_end_matches('0');
    let mut text = if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    };
    if negative && text != "0" {
        text.insert(0, '-');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case was answered by a Redis 7.0.15 (x86-64) for SET k a,
    /// INCRBYFLOAT k b.
    #[test]
    fn sums_print_as_redis_7_prints_them() {
        for (a, b, redis) in [
            ("10.5", "0.1", "10.6"),
            ("5.0e3", "2.0e2", "5200"),
            ("1000.1", "0", "1000.09999999999999998"),
            ("0.1", "0.2", "0.3"),
            ("3", "-3", "0"),
            ("-0.0", "0", "0"),
            ("1.23456789012345678", "0", "1.23456789012345678"),
            ("12345678901234567890", "1", "12345678901234567891"),
        ] {
            assert_eq!(
                incr_by_float(Some(a.as_bytes()), b.as_bytes()).as_deref(),
                Ok(redis),
                "{a} + {b}"
            );
        }
        assert_eq!(incr_by_float(None, b"1.5").as_deref(), Ok("1.5"));
    }

    #[test]
    fn what_redis_refuses_is_refused() {
        for bad in [
            "abc", "", " 1", "1 ", "nan", "1e5000", "1e-5000", "1e", ".", "--1",
        ] {
            assert!(!is_redis_float(bad.as_bytes()), "{bad:?}");
        }
        // Redis reads hexadecimal floats; ballast does not (module docs).
        assert!(!is_redis_float(b"0x10"));
        for good in [
            "1",
            "-1.5",
            "+2",
            ".5",
            "5.",
            "1E3",
            "inf",
            "-Infinity",
            "0e0",
        ] {
            assert!(is_redis_float(good.as_bytes()), "{good:?}");
        }
        assert_eq!(
            incr_by_float(Some(b"1"), b"inf"),
            Err(FloatError::NanOrInfinity)
        );
        assert_eq!(
            incr_by_float(Some(b"1.1e4932"), b"1.1e4932"),
            Err(FloatError::NanOrInfinity)
        );
        assert_eq!(incr_by_float(Some(b"x"), b"1"), Err(FloatError::NotAFloat));
    }
}
