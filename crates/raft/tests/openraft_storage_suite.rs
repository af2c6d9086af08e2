//! openraft's whole storage suite (`openraft::testing::log::Suite::test_all`)
//! against the ballast log store and the interim state machine over the
//! engine (see `ballast_raft::state_machine` for what is real there).

use ballast_raft::state_machine::StateMachine;
use ballast_raft::{LogStore, TypeConfig};
use ballast_storage::fs::StdFs;
use ballast_storage::wal::WalOptions;
use ballast_storage::{Background, Options, Preset};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use std::io;
use std::sync::Arc;
use tempfile::TempDir;

struct Builder {
    wal: WalOptions,
}

fn build_error(e: impl Into<io::Error>) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e.into())
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = TempDir::new().map_err(build_error)?;
        let (store, _) = LogStore::open(Arc::new(StdFs), &dir.path().join("raft"), self.wal)
            .await
            .map_err(build_error)?;
        let mut options = Options::preset(Preset::Durable);
        options.background = Background::Tasks;
        let sm = StateMachine::open(&dir.path().join("sm"), options)
            .await
            .map_err(build_error)?;
        Ok((dir, store, sm))
    }
}

#[tokio::test]
async fn openraft_storage_suite_passes_with_default_segments() -> anyhow::Result<()> {
    Suite::test_all(Builder {
        wal: WalOptions::default(),
    })
    .await?;
    Ok(())
}

/// Tiny segments put nearly every entry in its own segment, so purge and
/// truncate cross segment boundaries in every case.
#[tokio::test]
async fn openraft_storage_suite_passes_with_tiny_segments() -> anyhow::Result<()> {
    Suite::test_all(Builder {
        wal: WalOptions {
            segment_bytes: 64,
            ..WalOptions::default()
        },
    })
    .await?;
    Ok(())
}
