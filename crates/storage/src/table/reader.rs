//! Reading a table: [`Table`] (open, point lookups) and [`TableIterator`].

use super::block::Block;
use super::bloom::BloomFilter;
use super::cache::BlockCache;
use super::format::{read_block, read_exact, BlockHandle, Footer, FOOTER_LEN};
use super::properties::TableProperties;
use crate::error::{Error, Result};
use crate::fs::DynFile;
use crate::iter::InternalIterator;
use crate::key::TRAILER_LEN;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open, checked table file. Shared behind an `Arc` by readers and iterators.
#[derive(Debug)]
pub struct Table {
    file: DynFile,
    path: PathBuf,
    file_number: u64,
    file_size: u64,
    cache: Arc<BlockCache>,
    /// Index block: entry `i`'s key is >= every key of data block `i`.
    index: Block,
    /// Data block handles, parallel to the index entries.
    handles: Box<[BlockHandle]>,
    filter: Option<BloomFilter>,
    props: TableProperties,
}

/// The user-key part of an internal key, or the whole key if it is too
/// short to carry a trailer (a caller bug, tolerated).
#[inline]
fn user_part(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len().saturating_sub(TRAILER_LEN)]
}

impl Table {
    /// Opens the table `file` of `file_size` bytes: checks the footer, then
    /// reads and checks the index, filter and properties blocks. A short
    /// file, a bad magic or checksum, or a malformed metadata block is
    /// [`Error::Corruption`] naming `path` and the offset; a newer format
    /// version is [`Error::UnsupportedFormat`].
    pub fn open(
        file: DynFile,
        path: PathBuf,
        file_number: u64,
        file_size: u64,
        cache: Arc<BlockCache>,
    ) -> Result<Arc<Table>> {
        if file_size < FOOTER_LEN as u64 {
            return Err(Error::corruption(
                &path,
                0,
                format!("file of {file_size} bytes is shorter than the {FOOTER_LEN}-byte footer"),
            ));
        }
        let footer_offset = file_size - FOOTER_LEN as u64;
        let mut buf = [0u8; FOOTER_LEN];
        read_exact(file.as_ref(), &path, footer_offset, &mut buf)?;
        let footer = Footer::decode(&buf, &path, footer_offset)?;
        let check = |h: BlockHandle, what: &str| -> Result<()> {
            match h.end() {
                Some(end) if end <= footer_offset => Ok(()),
                _ => Err(Error::corruption(
                    &path,
                    footer_offset,
                    format!(
                        "{what} handle (offset {}, size {}) points past the data",
                        h.offset, h.size
                    ),
                )),
            }
        };
        check(footer.index, "index")?;
        check(footer.properties, "properties")?;

        let raw = read_block(file.as_ref(), &path, footer.index)?;
        let index = Block::decode(&raw).map_err(|r| {
            Error::corruption(&path, footer.index.offset, format!("index block: {r}"))
        })?;
        let mut handles = Vec::with_capacity(index.len());
        for i in 0..index.len() {
            let h = BlockHandle::decode_exact(index.value(i))
                .filter(|h| h.end().is_some_and(|end| end <= footer_offset))
                .ok_or_else(|| {
                    Error::corruption(
                        &path,
                        footer.index.offset,
                        format!("index entry {i} holds a bad block handle"),
                    )
                })?;
            handles.push(h);
        }

        let filter = if footer.filter.is_absent() {
            None
        } else {
            check(footer.filter, "filter")?;
            let raw = read_block(file.as_ref(), &path, footer.filter)?;
            Some(BloomFilter::new(raw).ok_or_else(|| {
                Error::corruption(&path, footer.filter.offset, "malformed filter block")
            })?)
        };

        let raw = read_block(file.as_ref(), &path, footer.properties)?;
        let props = TableProperties::decode(&raw).map_err(|r| {
            Error::corruption(
                &path,
                footer.properties.offset,
                format!("properties block: {r}"),
            )
        })?;
        if props.data_blocks != handles.len() as u64 {
            return Err(Error::corruption(
                &path,
                footer.properties.offset,
                format!(
                    "properties count {} data blocks, the index {}",
                    props.data_blocks,
                    handles.len()
                ),
            ));
        }

        Ok(Arc::new(Table {
            file,
            path,
            file_number,
            file_size,
            cache,
            index,
            handles: handles.into_boxed_slice(),
            filter,
            props,
        }))
    }

    /// The file number (the block cache key's first half).
    pub fn file_number(&self) -> u64 {
        self.file_number
    }

    /// The file's length.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The properties recorded when the table was written.
    pub fn properties(&self) -> &TableProperties {
        &self.props
    }

    /// False if the bloom filter says `user_key` is certainly absent (always
    /// true for a table without a filter).
    #[inline]
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_contain(user_key))
    }

    /// Number of data blocks.
    pub fn data_blocks(&self) -> usize {
        self.handles.len()
    }

    /// Where data block `i` lives (for diagnostics and tools).
    pub fn data_block_handle(&self, i: usize) -> Option<BlockHandle> {
        self.handles.get(i).copied()
    }

    /// Reads every data block from the file (never the cache) and checks
    /// its checksum and encoding: a table copied through a corrupting read
    /// passes [`Table::open`], which reads only the footer, index and filter.
    pub fn verify_blocks(&self) -> Result<()> {
        for handle in &self.handles {
            let raw = read_block(self.file.as_ref(), &self.path, *handle)?;
            Block::decode(&raw).map_err(|r| {
                Error::corruption(&self.path, handle.offset, format!("data block: {r}"))
            })?;
        }
        Ok(())
    }

    /// Data block `i`, from the cache or read, checked and decoded (and
    /// cached if `fill_cache`).
    fn data_block(&self, i: usize, fill_cache: bool) -> Result<Arc<Block>> {
        let handle = self.handles[i];
        if let Some(b) = self.cache.get(self.file_number, handle.offset) {
            return Ok(b);
        }
        let raw = read_block(self.file.as_ref(), &self.path, handle)?;
        let block = Block::decode(&raw).map_err(|r| {
            Error::corruption(&self.path, handle.offset, format!("data block: {r}"))
        })?;
        let block = Arc::new(block);
        if fill_cache {
            self.cache
                .insert(self.file_number, handle.offset, Arc::clone(&block));
        }
        Ok(block)
    }

    /// The first entry whose internal key is >= `lookup`, if it has the same
    /// user key as `lookup` (see [`crate::key::lookup_key`]); returns its
    /// internal key and value as shared slices of the cached block.
    pub fn get(&self, lookup: &[u8]) -> Result<Option<(Bytes, Bytes)>> {
        let ukey = user_part(lookup);
        if !self.may_contain(ukey) {
            return Ok(None);
        }
        let i = self.index.seek(lookup);
        if i >= self.handles.len() {
            return Ok(None);
        }
        let block = self.data_block(i, true)?;
        let j = block.seek(lookup);
        if j >= block.len() || user_part(block.key(j)) != ukey {
            return Ok(None);
        }
        Ok(Some((block.key_bytes(j), block.value_bytes(j))))
    }

    /// A two-level iterator over the whole table (blocks it reads are cached).
    pub fn iter(self: &Arc<Self>) -> TableIterator {
        TableIterator {
            table: Arc::clone(self),
            index_pos: 0,
            block: None,
            pos: 0,
            fill_cache: true,
        }
    }
}

/// Iterates a table's entries in internal-key order: index entry -> data
/// block (through the block cache) -> entry.
#[derive(Debug)]
pub struct TableIterator {
    table: Arc<Table>,
    index_pos: usize,
    block: Option<Arc<Block>>,
    pos: usize,
    fill_cache: bool,
}

impl TableIterator {
    /// Whether blocks read by this iterator are inserted into the cache
    /// (turn off for compaction inputs and long scans). Default: on.
    pub fn set_fill_cache(&mut self, fill: bool) {
        self.fill_cache = fill;
    }

    /// The table being iterated.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    fn invalidate(&mut self) {
        self.block = None;
        self.pos = 0;
    }

    /// The data block at `index_pos`; `None` (and invalid) past the last
    /// block; on a read error the iterator is left invalid.
    fn load_current(&mut self) -> Result<Option<Arc<Block>>> {
        if self.index_pos >= self.table.handles.len() {
            self.invalidate();
            return Ok(None);
        }
        match self.table.data_block(self.index_pos, self.fill_cache) {
            Ok(b) => Ok(Some(b)),
            Err(e) => {
                self.invalidate();
                Err(e)
            }
        }
    }

    /// Loads the block at `index_pos`, positions at entry `pos` of it, and
    /// moves forward over exhausted blocks. Invalid at the end of the table.
    fn settle(&mut self, mut pos: usize) -> Result<()> {
        loop {
            let Some(block) = self.load_current()? else {
                return Ok(());
            };
            if pos < block.len() {
                self.block = Some(block);
                self.pos = pos;
                return Ok(());
            }
            self.index_pos += 1;
            pos = 0;
        }
    }
}

impl InternalIterator for TableIterator {
    fn valid(&self) -> bool {
        self.block.as_ref().is_some_and(|b| self.pos < b.len())
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.index_pos = 0;
        self.settle(0)
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.index_pos = self.table.index.seek(target);
        let Some(block) = self.load_current()? else {
            return Ok(());
        };
        let pos = block.seek(target);
        if pos < block.len() {
            self.block = Some(block);
            self.pos = pos;
            return Ok(());
        }
        self.index_pos += 1;
        self.settle(0)
    }

    fn next(&mut self) -> Result<()> {
        debug_assert!(self.valid());
        let Some(block) = &self.block else {
            return Ok(());
        };
        if self.pos + 1 < block.len() {
            self.pos += 1;
            return Ok(());
        }
        self.index_pos += 1;
        self.settle(0)
    }

    fn key(&self) -> &[u8] {
        match &self.block {
            Some(b) => b.key(self.pos),
            None => &[],
        }
    }

    fn value(&self) -> &[u8] {
        match &self.block {
            Some(b) => b.value(self.pos),
            None => &[],
        }
    }
}
