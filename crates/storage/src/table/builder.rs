//! Writes a table file: data blocks, then the filter, index and properties
//! blocks, then the footer.

use super::block::{compare_ikey, BlockBuilder};
use super::bloom::BloomBuilder;
use super::format::{append_block, BlockHandle, Footer, FORMAT_VERSION};
use super::properties::TableProperties;
use crate::error::{Error, Result};
use crate::fs::DynFile;
use crate::key::{parse_internal_key, user_key, TRAILER_LEN};
use crate::options::Compression;
use std::cmp::Ordering;
use std::path::PathBuf;

/// Bytes buffered before one positional write.
const WRITE_BUFFER: usize = 256 * 1024;

/// How tables are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// A data block is closed once its uncompressed size reaches this.
    pub block_bytes: usize,
    /// Data (and index) block compression.
    pub compression: Compression,
    /// Bloom filter bits per user key; 0 writes no filter.
    pub bloom_bits_per_key: u32,
    /// Entries between restart points in data blocks.
    pub restart_interval: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_bytes: 4096,
            compression: Compression::Snappy,
            bloom_bits_per_key: 10,
            restart_interval: 16,
        }
    }
}

/// What a finished table holds, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// Total file length in bytes.
    pub file_size: u64,
    /// Number of entries.
    pub entries: u64,
    /// Smallest internal key (empty if the table is empty).
    pub smallest: Vec<u8>,
    /// Largest internal key (empty if the table is empty).
    pub largest: Vec<u8>,
    /// Smallest sequence number (0 if empty).
    pub smallest_seq: u64,
    /// Largest sequence number (0 if empty).
    pub largest_seq: u64,
}

/// Streams sorted entries into a new table file.
#[derive(Debug)]
pub struct TableBuilder {
    file: DynFile,
    path: PathBuf,
    opts: TableOptions,
    /// Bytes already written to the file.
    written: u64,
    /// Framed blocks not yet written; they start at file offset `written`.
    out: Vec<u8>,
    data: BlockBuilder,
    index: BlockBuilder,
    bloom: Option<BloomBuilder>,
    encoder: snap::raw::Encoder,
    props: TableProperties,
    last_key: Vec<u8>,
}

impl TableBuilder {
    /// Starts a table in `file` (empty, opened for writing) at `path` (used in errors).
    pub fn new(file: DynFile, path: PathBuf, opts: TableOptions) -> TableBuilder {
        TableBuilder {
            file,
            path,
            opts,
            written: 0,
            out: Vec::with_capacity(WRITE_BUFFER + opts.block_bytes * 2),
            data: BlockBuilder::new(opts.restart_interval),
            index: BlockBuilder::new(1),
            bloom: (opts.bloom_bits_per_key > 0)
                .then(|| BloomBuilder::new(opts.bloom_bits_per_key)),
            encoder: snap::raw::Encoder::new(),
            props: TableProperties {
                format_version: FORMAT_VERSION,
                bloom_bits_per_key: opts.bloom_bits_per_key,
                ..TableProperties::default()
            },
            last_key: Vec::new(),
        }
    }

    /// Appends an entry. Internal keys must be strictly increasing by
    /// [`crate::key::compare_internal`] and at least 8 bytes long.
    pub fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        // Out-of-order input is a runtime check, not an assertion: a merge
        // that read damaged data (a checksum mismatch the reader missed)
        // hands the builder keys in the wrong order, and that must end as a
        // named corruption error, never as a panic or a table whose index
        // lies about its keys.
        if self.props.entries > 0 && compare_ikey(&self.last_key, ikey) != Ordering::Less {
            return Err(Error::corruption(
                &self.path,
                self.written,
                "the entries to write arrived out of order: an input table or WAL record is damaged",
            ));
        }
        if ikey.len() < TRAILER_LEN {
            return Err(Error::invalid_option(
                "key",
                format!(
                    "internal key of {} bytes is shorter than its trailer",
                    ikey.len()
                ),
            ));
        }
        let seq = parse_internal_key(ikey).map_or(0, |p| p.seq);
        let first = self.props.entries == 0;
        if let Some(bloom) = &mut self.bloom {
            if first || user_key(&self.last_key) != user_key(ikey) {
                bloom.add(user_key(ikey));
            }
        }
        if first {
            self.props.smallest = ikey.to_vec();
            self.props.smallest_seq = seq;
            self.props.largest_seq = seq;
        } else {
            self.props.smallest_seq = self.props.smallest_seq.min(seq);
            self.props.largest_seq = self.props.largest_seq.max(seq);
        }
        self.props.entries += 1;
        self.props.raw_key_bytes += ikey.len() as u64;
        self.props.raw_value_bytes += value.len() as u64;
        self.last_key.clear();
        self.last_key.extend_from_slice(ikey);

        self.data.add(ikey, value);
        if self.data.estimated_size() >= self.opts.block_bytes {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Bytes the file would have if finished now (approximate).
    pub fn estimated_size(&self) -> u64 {
        self.written
            + self.out.len() as u64
            + self.data.estimated_size() as u64
            + self.index.estimated_size() as u64
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.props.entries
    }

    fn flush_data_block(&mut self) -> Result<()> {
        if self.data.is_empty() {
            return Ok(());
        }
        let offset = self.written + self.out.len() as u64;
        let size = append_block(
            &mut self.out,
            self.data.finish(),
            self.opts.compression,
            &mut self.encoder,
        );
        let handle = BlockHandle { offset, size };
        self.props.data_blocks += 1;
        let mut value = Vec::with_capacity(20);
        handle.encode_to(&mut value);
        // The index key is a copy of the block's last key: >= every key of
        // this block and < the first key of the next.
        self.index.add(&self.last_key, &value);
        self.data.reset();
        if self.out.len() >= WRITE_BUFFER {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.file
                .write_all_at(&self.out, self.written)
                .map_err(|e| Error::io(&self.path, e))?;
            self.written += self.out.len() as u64;
            self.out.clear();
        }
        Ok(())
    }

    /// Appends a metadata block and returns its handle.
    fn add_meta_block(&mut self, raw: &[u8], compression: Compression) -> BlockHandle {
        let offset = self.written + self.out.len() as u64;
        let size = append_block(&mut self.out, raw, compression, &mut self.encoder);
        BlockHandle { offset, size }
    }

    /// Writes the last data block, the filter, index and properties blocks
    /// and the footer, then `sync_data`s the file.
    pub fn finish(mut self) -> Result<TableSummary> {
        self.flush_data_block()?;
        self.props.data_bytes = self.written + self.out.len() as u64;
        self.props.largest = self.last_key.clone();
        let filter = match self.bloom.take() {
            Some(b) => self.add_meta_block(&b.finish(), Compression::None),
            None => BlockHandle::default(),
        };
        let mut index = std::mem::replace(&mut self.index, BlockBuilder::new(1));
        let index = self.add_meta_block(index.finish(), self.opts.compression);
        let properties = self.add_meta_block(&self.props.encode(), Compression::None);
        let footer = Footer {
            filter,
            index,
            properties,
            version: FORMAT_VERSION,
        };
        let encoded = footer.encode();
        // The write side of the pair with `Table::open`: the footer reads
        // back as written (debug builds only).
        debug_assert_eq!(
            Footer::decode(&encoded, &self.path, 0).ok(),
            Some(footer),
            "a table footer does not decode to itself"
        );
        self.out.extend_from_slice(&encoded);
        self.write_out()?;
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        let p = self.props;
        Ok(TableSummary {
            file_size: self.written,
            entries: p.entries,
            smallest: p.smallest,
            largest: p.largest,
            smallest_seq: p.smallest_seq,
            largest_seq: p.largest_seq,
        })
    }
}
