//! The block cache: decoded blocks shared by every table, keyed by (file
//! number, block offset), weighed by their decoded size.
//!
//! The hasher is fixed (no random seed) because under simulation a cache hit
//! decides whether the simulated disk is read: the same run must hit and
//! miss the same way every time. The shard count is fixed for the same reason.

use super::block::Block;
use super::bloom::fmix64;
use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{OptionsBuilder, Weighter};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A small deterministic hasher for `(u64, u64)` cache keys: a multiply-
/// rotate combine per word and the murmur3 finalizer at the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheKeyHasher(u64);

impl Hasher for CacheKeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        fmix64(self.0)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(29) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Weighs a cached block by its decoded size.
#[derive(Debug, Clone, Copy)]
pub struct BlockWeighter;

impl Weighter<CacheKey, Arc<Block>> for BlockWeighter {
    fn weight(&self, _key: &CacheKey, block: &Arc<Block>) -> u64 {
        block.charge()
    }
}

/// (file number, block offset).
pub type CacheKey = (u64, u64);

/// The map behind [`BlockCache`]: quick_cache, weighted by block size,
/// with the deterministic key hasher above. `None` in the cache when its
/// capacity is 0.
type BlockMap = Cache<
    CacheKey,
    Arc<Block>,
    BlockWeighter,
    BuildHasherDefault<CacheKeyHasher>,
    DefaultLifecycle<CacheKey, Arc<Block>>,
>;

/// Caches decoded blocks for all tables of an engine.
pub struct BlockCache {
    map: Option<BlockMap>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity)
            .field("usage", &self.usage_bytes())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

/// Caches at least this large are split into [`SHARDS`] shards.
const SHARDED_FROM: u64 = 16 << 20;
/// Shard count of a large cache (fixed, never derived from the CPU count).
const SHARDS: u64 = 16;
/// Typical decoded block size, used to size the cache's tables.
const TYPICAL_BLOCK: u64 = 4096;

impl BlockCache {
    /// A cache holding up to `capacity_bytes` of decoded blocks; 0 disables
    /// caching (every lookup misses, nothing is kept).
    pub fn new(capacity_bytes: u64) -> Arc<BlockCache> {
        let map = (capacity_bytes > 0).then(|| {
            let shards = if capacity_bytes >= SHARDED_FROM {
                SHARDS
            } else {
                1
            };
            // A multiple of the shard count, so that the per-shard
            // capacities add up to no more than the whole.
            let weight = capacity_bytes - capacity_bytes % shards;
            let items = (weight / TYPICAL_BLOCK).clamp(1, 1 << 24) as usize;
            let mut builder = OptionsBuilder::new();
            builder
                .shards(shards as usize)
                .weight_capacity(weight)
                .estimated_items_capacity(items);
            // Both required fields are set just above, so build cannot fail;
            // fall back to disabling the cache rather than panicking.
            builder.build().ok().map(|opts| {
                BlockMap::with_options(
                    opts,
                    BlockWeighter,
                    BuildHasherDefault::default(),
                    DefaultLifecycle::default(),
                )
            })
        });
        Arc::new(BlockCache {
            map: map.flatten(),
            capacity: capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// The block at `offset` of file `file_number`, if cached. Counts a hit or a miss.
    #[inline]
    pub fn get(&self, file_number: u64, offset: u64) -> Option<Arc<Block>> {
        let found = self
            .map
            .as_ref()
            .and_then(|c| c.get(&(file_number, offset)));
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Caches a block (a block heavier than the cache is not kept).
    pub fn insert(&self, file_number: u64, offset: u64, block: Arc<Block>) {
        if let Some(c) = &self.map {
            c.insert((file_number, offset), block);
        }
    }

    /// Drops every cached block of `file_number` (optional: blocks of
    /// deleted files also age out on their own). Costs a pass over the cache.
    pub fn erase_file(&self, file_number: u64) {
        if let Some(c) = &self.map {
            c.retain(|&(f, _), _| f != file_number);
        }
    }

    /// Lookups that found their block.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that did not.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Decoded bytes currently cached.
    pub fn usage_bytes(&self) -> u64 {
        self.map.as_ref().map_or(0, |c| c.weight())
    }

    /// The configured capacity.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity
    }
}
