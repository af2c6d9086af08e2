//! Reply shapes shared by the command modules: how an API error, an
//! unexpected answer, a byte range and an expiry time become replies.
//! Pure; its own module so that the command modules depend on it and
//! not on each other.

use ballast_raft::Response;
use bytes::Bytes;

use crate::api::{ApiError, Value};
use crate::command::TimeUnit;
use crate::resp::Reply;

/// The error reply for an [`ApiError`]. The first word is a code a client
/// can match on (README, "Error replies"). Outcome unknown (a write may or
/// may not be applied): `TIMEOUT` and `UNKNOWN`, and nothing else. Nothing
/// applied: `TRYAGAIN` (no leader: retry after a short wait; Redis Cluster
/// clients already retry on it), `SHUTDOWN`, `ERR` (the request is not
/// acceptable) and `UNAVAILABLE` (could not be served).
pub fn api_error_reply(error: &ApiError) -> Reply {
    let code = match error {
        ApiError::NoLeader => "TRYAGAIN",
        ApiError::Timeout { .. } => "TIMEOUT",
        ApiError::ShuttingDown => "SHUTDOWN",
        ApiError::Invalid(_) => "ERR",
        ApiError::Unavailable(_) => "UNAVAILABLE",
        ApiError::Unknown(_) => "UNKNOWN",
    };
    Reply::Error(format!("{code} {error}"))
}

/// What a failed step answers.
pub(super) type Step<T> = Result<T, Reply>;

pub(super) fn unexpected(response: Response) -> Reply {
    match response {
        Response::Rejected(why) => Reply::Error(format!("ERR {why}")),
        other => Reply::Error(format!(
            "ERR internal error: the node answered {other:?} to this request"
        )),
    }
}

/// GETRANGE's slice of `value` (Redis's `getrangeCommand`).
pub(super) fn byte_range(value: &Bytes, start: i64, end: i64) -> Bytes {
    let length = i64::try_from(value.len()).unwrap_or(i64::MAX);
    if start < 0 && end < 0 && start > end {
        return Bytes::new();
    }
    let from_end = |index: i64| {
        if index < 0 {
            length.saturating_add(index).max(0)
        } else {
            index
        }
    };
    let start = from_end(start);
    let end = from_end(end).min(length - 1);
    if length == 0 || start > end {
        return Bytes::new();
    }
    // 0 <= start <= end < length here, so both convert.
    let (start, end) = (start as usize, end as usize);
    value.slice(start..=end)
}

/// EXPIRETIME and PEXPIRETIME of `value`: -2 missing, -1 without expiry.
pub(super) fn expire_time_reply(value: Option<Value>, unit: TimeUnit) -> Reply {
    Reply::Integer(match value {
        None => -2,
        Some(Value {
            expire_at_ms: None, ..
        }) => -1,
        Some(Value {
            expire_at_ms: Some(at_ms),
            ..
        }) => {
            let at_ms = i64::try_from(at_ms).unwrap_or(i64::MAX);
            match unit {
                TimeUnit::Milliseconds => at_ms,
                // Redis rounds to the nearest second here too.
                TimeUnit::Seconds => at_ms.saturating_add(500) / 1000,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_become_replies_a_client_can_act_on() {
        let text = |error: ApiError| match api_error_reply(&error) {
            Reply::Error(text) => text,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(ApiError::NoLeader),
            "TRYAGAIN no leader is known right now; retry shortly"
        );
        assert_eq!(
            text(ApiError::Timeout { ms: 5000 }),
            "TIMEOUT timed out after 5000 ms; the outcome is unknown"
        );
        assert_eq!(
            text(ApiError::ShuttingDown),
            "SHUTDOWN the node is shutting down"
        );
        assert_eq!(
            text(ApiError::Invalid("key too long".into())),
            "ERR key too long"
        );
        assert_eq!(
            text(ApiError::Unavailable("disk failed".into())),
            "UNAVAILABLE disk failed"
        );
        assert_eq!(
            text(ApiError::Unknown("lost the leader mid-request".into())),
            "UNKNOWN lost the leader mid-request; the write may or may not be applied"
        );
    }

    /// A client matching on the first word learns whether a write may
    /// have happened: exactly TIMEOUT and UNKNOWN say so.
    #[test]
    fn only_timeout_and_unknown_say_the_outcome_is_unknown() {
        let all = [
            ApiError::NoLeader,
            ApiError::Timeout { ms: 1 },
            ApiError::ShuttingDown,
            ApiError::Invalid("x".into()),
            ApiError::Unavailable("x".into()),
            ApiError::Unknown("x".into()),
        ];
        for error in all {
            let Reply::Error(text) = api_error_reply(&error) else {
                panic!("not an error reply");
            };
            let code = text.split(' ').next().unwrap_or_default();
            assert_eq!(
                matches!(code, "TIMEOUT" | "UNKNOWN"),
                error.outcome_unknown(),
                "{text}"
            );
        }
    }

    #[test]
    fn getrange_follows_redis_index_rules() {
        let value = Bytes::from_static(b"This is a string");
        let range = |start, end| byte_range(&value, start, end);
        assert_eq!(range(0, 3), "This");
        assert_eq!(range(-3, -1), "ing");
        assert_eq!(range(0, -1), "This is a string");
        assert_eq!(range(10, 100), "string");
        assert_eq!(range(5, 3), "");
        assert_eq!(range(-1, -5), "");
        assert_eq!(range(-100, 2), "Thi");
        assert_eq!(range(i64::MIN, i64::MAX), "This is a string");
        assert_eq!(byte_range(&Bytes::new(), 0, -1), "");
    }
}
