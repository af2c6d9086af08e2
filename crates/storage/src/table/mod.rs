//! SSTables: immutable sorted files of internal keys and values.
//!
//! A table is a run of prefix-compressed data blocks, a bloom filter over
//! user keys, an index block, a properties block and a fixed 64-byte footer;
//! every block carries a CRC32. The byte layout is in `FORMAT-table.md`
//! beside this crate.
//!
//! - [`TableBuilder`] writes a table from entries added in order.
//! - [`Table::open`] checks the footer and loads the index, filter and
//!   properties; [`Table::get`] serves point lookups and [`Table::iter`]
//!   scans, both reading data blocks through the shared [`BlockCache`].
//! - Every block is checked when read: a checksum mismatch, an unknown
//!   compression type, a snappy failure or malformed block contents is
//!   [`crate::Error::Corruption`] naming the file and the block's offset.

mod block;
mod bloom;
mod builder;
mod cache;
mod format;
mod properties;
mod reader;

#[cfg(test)]
mod tests;

pub use block::{Block, BlockBuilder};
pub use bloom::{bloom_hash, probes_for, BloomBuilder, BloomFilter};
pub use builder::{TableBuilder, TableOptions, TableSummary};
pub use cache::{BlockCache, CacheKey};
pub use format::{
    BlockHandle, Footer, BLOCK_TRAILER_LEN, BLOCK_TYPE_NONE, BLOCK_TYPE_SNAPPY, FOOTER_LEN,
    FORMAT_VERSION, MAGIC,
};
pub use properties::TableProperties;
pub use reader::{Table, TableIterator};
