//! Redis's glob dialect, for `SCAN ... MATCH pattern`.
//!
//! A byte-for-byte port of Redis's `stringmatchlen` (src/util.c), so that
//! a pattern selects the same keys here as in Redis, quirks included:
//!
//! - `*` any run of bytes, `?` any one byte;
//! - `[abc]` one of, `[^abc]` none of, `[a-z]` a range (a reversed range
//!   `[z-a]` is swapped), `\x` inside a class is a literal `x`; a class
//!   left open at the end of the pattern ends there;
//! - `\x` outside a class is a literal `x`; a trailing lone `\` is a
//!   literal backslash;
//! - matching is per byte, case-sensitive and binary-safe.
//!
//! One quirk callers must know: `glob_match(b"*", b"")` is false, because
//! Redis's matcher never matches an empty subject against a non-empty
//! pattern. Redis's SCAN and KEYS never ask: a bare `*` means "every key"
//! before the matcher is consulted. [`matches_every_key`] is that shortcut.
//!
//! Like Redis 7, the matcher gives up on a pattern nested more than 1000
//! `*` deep (answering "no match") and uses Redis's `skipLongerMatches`
//! rule, so patterns like `a*a*a*...b` cannot take exponential time.

/// Star nesting beyond which the matcher answers "no match", as in Redis;
/// also bounds this function's recursion depth (stack use).
pub const GLOB_NESTING_MAX: usize = 1000;

/// Whether `subject` matches `pattern` under Redis's glob rules.
///
/// ```
/// use ballast_node::glob::glob_match;
/// assert!(glob_match(b"user:[0-9]*", b"user:42"));
/// assert!(!glob_match(b"user:[^0-9]*", b"user:42"));
/// assert!(glob_match(br"a\*b", b"a*b"));
/// ```
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    let mut skip_longer_matches = false;
    match_impl(pattern, subject, &mut skip_longer_matches, 0)
}

/// Whether `pattern` is the one Redis treats as "every key" without
/// asking the matcher: exactly `*`. Call this before [`glob_match`] so
/// that the empty key is found by `SCAN 0 MATCH *`, as in Redis.
pub fn matches_every_key(pattern: &[u8]) -> bool {
    pattern == b"*"
}

fn match_impl(
    pattern: &[u8],
    subject: &[u8],
    skip_longer_matches: &mut bool,
    nesting: usize,
) -> bool {
    if nesting > GLOB_NESTING_MAX {
        return false;
    }
    // C reads the pattern as a NUL-terminated string; past the end is NUL.
    let at = |index: usize| pattern.get(index).copied().unwrap_or(0);
    let mut p = 0; // pattern position; the C code's patternLen is pattern.len() - p
    let mut s = 0;
    while p < pattern.len() && s < subject.len() {
        match pattern[p] {
            b'*' => {
                while p < pattern.len() && at(p + 1) == b'*' {
                    p += 1;
                }
                if pattern.len() - p == 1 {
                    return true;
                }
                while s < subject.len() {
                    if match_impl(
                        &pattern[p + 1..],
                        &subject[s..],
                        skip_longer_matches,
                        nesting + 1,
                    ) {
                        return true;
                    }
                    if *skip_longer_matches {
                        return false;
                    }
                    s += 1;
                }
                // No match for the rest of the pattern from anywhere in the
                // rest of the subject: an earlier `*` taking more bytes
                // cannot help either (Redis's comment, paraphrased).
                *skip_longer_matches = true;
                return false;
            }
            b'?' => s += 1,
            b'[' => {
                p += 1;
                let negate = at(p) == b'^';
                if negate {
                    p += 1;
                }
                let byte = subject[s];
                let mut matched = false;
                loop {
                    let remaining = pattern.len() - p;
                    if at(p) == b'\\' && remaining >= 2 {
                        p += 1;
                        if pattern[p] == byte {
                            matched = true;
                        }
                    } else if at(p) == b']' {
                        break;
                    } else if remaining == 0 {
                        // Class left open: back up so that the step after
                        // the class lands exactly on the end.
                        p -= 1;
                        break;
                    } else if remaining >= 3 && pattern[p + 1] == b'-' {
                        let (mut start, mut end) = (pattern[p], pattern[p + 2]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        p += 2;
                        if (start..=end).contains(&byte) {
                            matched = true;
                        }
                    } else if pattern[p] == byte {
                        matched = true;
                    }
                    p += 1;
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s += 1;
            }
            first => {
                let literal = if first == b'\\' && pattern.len() - p >= 2 {
                    p += 1;
                    pattern[p]
                } else {
                    first
                };
                if literal != subject[s] {
                    return false;
                }
                s += 1;
            }
        }
        p += 1;
        if s == subject.len() {
            while at(p) == b'*' {
                p += 1;
            }
            break;
        }
    }
    p >= pattern.len() && s == subject.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes(pattern: &str, subject: &str) {
        assert!(
            glob_match(pattern.as_bytes(), subject.as_bytes()),
            "{pattern:?} should match {subject:?}"
        );
    }

    fn no(pattern: &str, subject: &str) {
        assert!(
            !glob_match(pattern.as_bytes(), subject.as_bytes()),
            "{pattern:?} should not match {subject:?}"
        );
    }

    #[test]
    fn stars_and_question_marks() {
        yes("*", "anything");
        yes("h*o", "hello");
        yes("h*o", "ho");
        yes("h?llo", "hello");
        no("h?llo", "hllo");
        yes("*llo", "hello");
        yes("he*", "he");
        yes("he**", "he");
        yes("a*b*c", "aXXbYYc");
        no("a*b*c", "aXXbYY");
        yes("", "");
        no("", "a");
        no("a", "");
    }

    #[test]
    fn empty_subject_matches_only_the_empty_pattern_as_in_redis() {
        no("*", "");
        no("**", "");
        assert!(matches_every_key(b"*"));
        assert!(!matches_every_key(b"**"));
    }

    #[test]
    fn classes_ranges_and_negation() {
        yes("h[ae]llo", "hello");
        yes("h[ae]llo", "hallo");
        no("h[ae]llo", "hillo");
        yes("h[^e]llo", "hallo");
        no("h[^e]llo", "hello");
        yes("h[a-b]llo", "hbllo");
        no("h[a-b]llo", "hcllo");
        yes("[z-a]", "m"); // reversed range is swapped
        yes(r"[\]]", "]");
        yes(r"[\-]", "-");
        no(r"[\-]", "a");
        yes("[a-]", "]"); // Redis reads a-] as the range ']'..'a', closed by the end
        yes("[abc", "b"); // open class ends with the pattern
        no("[abc", "d");
        no("[abc", "bb");
    }

    #[test]
    fn escapes() {
        yes(r"h\*llo", "h*llo");
        no(r"h\*llo", "hello");
        yes(r"h\?llo", "h?llo");
        no(r"h\?llo", "hallo");
        yes(r"a\[b", "a[b");
        yes("a\\", "a\\"); // trailing lone backslash is literal
    }

    #[test]
    fn adversarial_patterns_finish_quickly() {
        let pattern = "a*".repeat(30) + "b";
        no(&pattern, &"a".repeat(300));
        let deep = "*a".repeat(GLOB_NESTING_MAX + 10);
        no(&deep, &"a".repeat(GLOB_NESTING_MAX + 10));
    }

    #[test]
    fn binary_subjects() {
        assert!(glob_match(b"\x00*\xff", b"\x00abc\xff"));
        assert!(glob_match(b"?", b"\xff"));
    }

    /// An independent, exponential reference for the class-free part of
    /// the dialect: `*`, `?`, `\x` and literals. Short inputs only.
    fn reference(pattern: &[u8], subject: &[u8]) -> bool {
        if subject.is_empty() {
            // Redis's quirk: an empty subject matches only an empty pattern.
            return pattern.is_empty();
        }
        fn go(pattern: &[u8], subject: &[u8]) -> bool {
            match pattern.split_first() {
                None => subject.is_empty(),
                Some((b'*', rest)) => (0..=subject.len()).any(|skip| go(rest, &subject[skip..])),
                Some((b'?', rest)) => !subject.is_empty() && go(rest, &subject[1..]),
                Some((b'\\', rest)) if !rest.is_empty() => {
                    subject.first() == Some(&rest[0]) && go(&rest[1..], &subject[1..])
                }
                Some((&literal, rest)) => {
                    subject.first() == Some(&literal) && go(rest, &subject[1..])
                }
            }
        }
        go(pattern, subject)
    }

    proptest::proptest! {
        #[test]
        fn class_free_patterns_agree_with_a_reference(
            pattern in proptest::collection::vec(proptest::sample::select(b"ab*?\\".to_vec()), 0..8),
            subject in proptest::collection::vec(proptest::sample::select(b"ab*?\\".to_vec()), 0..8),
        ) {
            proptest::prop_assert_eq!(glob_match(&pattern, &subject), reference(&pattern, &subject));
        }

        #[test]
        fn escaped_subjects_match_themselves_only(
            subject in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..16),
            other in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..16),
        ) {
            let pattern: Vec<u8> = subject.iter().flat_map(|&byte| [b'\\', byte]).collect();
            proptest::prop_assert!(glob_match(&pattern, &subject));
            proptest::prop_assert_eq!(glob_match(&pattern, &other), other == subject);
        }

        #[test]
        fn any_pattern_terminates_without_panicking(
            pattern in proptest::collection::vec(proptest::sample::select(b"a*?[]^-\\".to_vec()), 0..24),
            subject in proptest::collection::vec(proptest::sample::select(b"a]-^\\b".to_vec()), 0..24),
        ) {
            let _ = glob_match(&pattern, &subject);
        }
    }
}
