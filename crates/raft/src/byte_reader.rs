//! The one byte reader of the crate's own formats: Raft log entries and
//! commit records ([`crate::codec`]), the applied marker, the Raft meta file
//! ([`crate::meta`]) and snapshot descriptors ([`crate::snapshot`]).
//!
//! It reads little-endian fields off the front of a slice. Every read is
//! bounds-checked and a short read is a [`DecodeError::Malformed`] naming
//! the field it was reading, never a panic. Limits: an element count read
//! with [`ByteReader::count`] is refused when that many elements of their
//! smallest size could not fit in what is left, so no bad count makes a
//! decoder allocate more than its input's size.
//!
//! Everything here is pure: no I/O, no clock.

/// Why bytes could not be decoded. The caller adds the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Written by a newer format version.
    Version(u8),
    /// Structurally wrong: truncated, unknown tag, trailing bytes.
    Malformed(String),
}

/// `Err(DecodeError::Malformed(what))`.
pub(crate) fn malformed<T>(what: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Malformed(what.into()))
}

/// A cursor over encoded bytes; every read is bounds-checked and names
/// its field in the error.
pub(crate) struct ByteReader<'a>(&'a [u8]);

impl<'a> ByteReader<'a> {
    /// A reader at the start of `src`.
    pub(crate) fn new(src: &'a [u8]) -> ByteReader<'a> {
        ByteReader(src)
    }

    /// What is left to read.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.0
    }

    /// The next `n` bytes, the field `what`.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return malformed(format!(
                "truncated {what}: wanted {n} bytes, {} left",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u32 element count, refused if `count * min_elem_bytes` exceeds
    /// what is left.
    pub(crate) fn count(
        &mut self,
        min_elem_bytes: usize,
        what: &str,
    ) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_elem_bytes) > self.0.len() {
            return malformed(format!("{what}: count {n} exceeds the remaining bytes"));
        }
        Ok(n)
    }

    /// Bytes after their u32 length, borrowed.
    pub(crate) fn bytes_ref(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    /// Bytes after their u32 length.
    pub(crate) fn bytes(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        Ok(self.bytes_ref(what)?.to_vec())
    }

    /// A UTF-8 string after its u32 length.
    pub(crate) fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes(what)?).or_else(|_| malformed(format!("{what} is not UTF-8")))
    }

    /// A flag byte (0 or 1), then the u64 if it is 1.
    pub(crate) fn opt_u64(&mut self, what: &str) -> Result<Option<u64>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.u64(what)?)),
            f => malformed(format!("bad option flag {f} in {what}")),
        }
    }

    /// Refuses bytes left after the last field of `what`.
    pub(crate) fn finish(&self, what: &str) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            malformed(format!("{} trailing bytes after {what}", self.0.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_name_their_field_and_counts_are_bounded() {
        let mut r = ByteReader::new(&[1, 0, 0, 0, 9]);
        assert_eq!(r.u32("length"), Ok(1));
        assert!(matches!(r.u64("index"), Err(DecodeError::Malformed(m)) if m.contains("index")));
        let mut r = ByteReader::new(&[200, 0, 0, 0, 1, 2]);
        assert!(matches!(r.count(1, "keys"), Err(DecodeError::Malformed(m)) if m.contains("keys")));
        let r = ByteReader::new(&[0]);
        assert!(r.finish("entry").is_err());
        assert!(ByteReader::new(&[]).finish("entry").is_ok());
    }
}
