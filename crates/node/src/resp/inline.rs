//! Splitting an inline command line into words, as Redis's `sdssplitargs`
//! does, so that what a person types into telnet or nc means the same
//! here as in Redis.
//!
//! - Words are separated by whitespace.
//! - `"..."` quotes a word; inside it `\n \r \t \b \a \\ \"` and `\xHH`
//!   are escapes, and any other escaped byte stands for itself.
//! - `'...'` quotes a word literally; only `\'` is an escape inside it.
//! - A closing quote must be followed by whitespace or the end of the
//!   line, and every quote must be closed; otherwise the line is refused.
//! - A NUL byte ends the line, because Redis parses the line as a C string.

use bytes::Bytes;

use crate::error::ProtocolError;

/// Splits one inline line (without its line terminator) into words.
///
/// ```
/// use ballast_node::resp::inline::split_args;
/// let words = split_args(br#"SET "a key" 'it''s'"#);
/// assert!(words.is_err()); // the closing ' of 'it' is followed by '
/// let words = split_args(br#"SET "a\x41 key" 'it\'s'"#).unwrap();
/// assert_eq!(words, vec!["SET", "aA key", "it's"]);
/// ```
pub fn split_args(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    // Emulates C's view of the line: reading past the end yields NUL.
    let at = |index: usize| line.get(index).copied().unwrap_or(0);
    let mut words = Vec::new();
    let mut index = 0;
    loop {
        while at(index) != 0 && is_space(at(index)) {
            index += 1;
        }
        if at(index) == 0 {
            return Ok(words);
        }
        let mut in_double = false;
        let mut in_single = false;
        let mut word = Vec::new();
        loop {
            let byte = at(index);
            if in_double {
                if byte == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                if byte == b'\\'
                    && at(index + 1) == b'x'
                    && at(index + 2).is_ascii_hexdigit()
                    && at(index + 3).is_ascii_hexdigit()
                {
                    word.push(hex_value(at(index + 2)) * 16 + hex_value(at(index + 3)));
                    index += 3;
                } else if byte == b'\\' && at(index + 1) != 0 {
                    index += 1;
                    word.push(match at(index) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if byte == b'"' {
                    if at(index + 1) != 0 && !is_space(at(index + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    index += 1;
                    break;
                } else {
                    word.push(byte);
                }
            } else if in_single {
                if byte == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                if byte == b'\\' && at(index + 1) == b'\'' {
                    index += 1;
                    word.push(b'\'');
                } else if byte == b'\'' {
                    if at(index + 1) != 0 && !is_space(at(index + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    index += 1;
                    break;
                } else {
                    word.push(byte);
                }
            } else {
                match byte {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => word.push(byte),
                }
            }
            index += 1;
        }
        words.push(Bytes::from(word));
    }
}

/// C's `isspace` in the "C" locale.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The value of one hex digit; the caller checked `is_ascii_hexdigit`.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::split_args;
    use crate::error::ProtocolError;

    fn words(line: &[u8]) -> Vec<Vec<u8>> {
        split_args(line)
            .unwrap()
            .into_iter()
            .map(|word| word.to_vec())
            .collect()
    }

    #[test]
    fn plain_words_split_on_any_whitespace() {
        assert_eq!(
            words(b"  SET  k\tv  "),
            vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]
        );
        assert!(words(b"").is_empty());
        assert!(words(b"   ").is_empty());
    }

    #[test]
    fn double_quotes_take_escapes() {
        assert_eq!(words(br#""a\nb\x41\"c\\""#), vec![b"a\nbA\"c\\".to_vec()]);
        assert_eq!(words(br#""""#), vec![b"".to_vec()]);
        // \x without two hex digits is just an escaped 'x'.
        assert_eq!(words(br#""\xZZ""#), vec![b"xZZ".to_vec()]);
    }

    #[test]
    fn single_quotes_are_literal_except_escaped_quote() {
        assert_eq!(words(br"'a\nb\'c'"), vec![b"a\\nb'c".to_vec()]);
    }

    #[test]
    fn quote_inside_a_word_opens_a_quoted_part() {
        assert_eq!(words(br#"ab"c d""#), vec![b"abc d".to_vec()]);
    }

    #[test]
    fn unbalanced_quotes_are_refused() {
        for line in [
            &br#""abc"#[..],
            br"'abc",
            br#""abc"x"#,
            br"'abc'x",
            br#""abc\"#,
        ] {
            assert_eq!(split_args(line), Err(ProtocolError::UnbalancedQuotes));
        }
    }

    #[test]
    fn nul_ends_the_line_as_in_c() {
        assert_eq!(
            words(b"GET k\0ignored"),
            vec![b"GET".to_vec(), b"k".to_vec()]
        );
    }
}
