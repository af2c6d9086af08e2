//! The run: opens the engine once, runs the listed benchmarks in order on
//! it, keeps what each measured for the summary, and closes it.

use crate::args::{Args, Bench};
use crate::keys_values::ValueGen;
use crate::report::{print_header, print_rawsync_comparison, Outcome};
use crate::workloads::{self, Setup};
use anyhow::{anyhow, Context, Result};
use ballast_storage::{Db, Options};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The run: arguments, engine options, the open engine and its directory.
pub struct Runner {
    pub args: Args,
    opts: Options,
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    db: Option<Arc<Db>>,
    values: Arc<ValueGen>,
    outcomes: Vec<Outcome>,
}

impl Runner {
    /// Starts the runtime, prints the header and opens the engine with
    /// `opts` in `dir` (`temporary`: a directory removed at exit).
    pub fn open(args: Args, opts: Options, dir: PathBuf, temporary: bool) -> Result<Runner> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.runtime_workers.max(1))
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;

        print_header(&args, &opts, &dir, temporary);
        let started = Instant::now();
        let db = rt
            .block_on(Db::open(&dir, opts.clone()))
            .with_context(|| format!("opening the engine in {}", dir.display()))?;
        println!(
            "open         :  {:.3} s (fresh: creates the WAL segment{})",
            started.elapsed().as_secs_f64(),
            if opts.wal_preallocate {
                ", zero-filled to wal_segment_bytes"
            } else {
                ""
            }
        );
        let values = Arc::new(ValueGen::new(args.seed, args.value_bytes));
        Ok(Runner {
            args,
            opts,
            dir,
            rt,
            db: Some(Arc::new(db)),
            values,
            outcomes: Vec::new(),
        })
    }

    fn db(&self) -> Result<&Arc<Db>> {
        self.db
            .as_ref()
            .ok_or_else(|| anyhow!("the engine is not open"))
    }

    /// Runs benchmark `b`, the `index`th of the run.
    pub fn run(&mut self, b: Bench, index: u64) -> Result<()> {
        let ctx = Setup {
            args: &self.args,
            opts: &self.opts,
            dir: &self.dir,
            rt: &self.rt,
            values: &self.values,
        };
        let outcome = match b {
            Bench::FillSeq | Bench::FillRandom | Bench::Overwrite => self
                .db()
                .and_then(|db| workloads::write(&ctx, db, b, index)),
            Bench::ReadRandom | Bench::ReadSeq | Bench::SeekRandom => {
                self.db().and_then(|db| workloads::read(&ctx, db, b, index))
            }
            Bench::RawSync => workloads::rawsync(&ctx),
            Bench::Reopen => {
                let reopened = self
                    .db
                    .take()
                    .ok_or_else(|| anyhow!("the engine is not open"))
                    .and_then(|db| workloads::reopen(&ctx, db));
                match reopened {
                    Ok(db) => {
                        self.db = Some(db);
                        return Ok(());
                    }
                    Err(e) => Err(e),
                }
            }
        }
        .with_context(|| format!("benchmark {}", b.name()))?;
        self.outcomes.push(outcome);
        Ok(())
    }

    /// Compares each write benchmark's ops/s with rawsync's.
    pub fn print_rawsync_comparison(&self) {
        print_rawsync_comparison(&self.outcomes);
    }

    /// Closes the engine, if open.
    pub fn close(&mut self) -> Result<()> {
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        let db = Arc::try_unwrap(db).map_err(|_| anyhow!("the engine is still shared"))?;
        let t = Instant::now();
        self.rt.block_on(db.close()).context("closing the engine")?;
        println!("close        :  {:.3} s", t.elapsed().as_secs_f64());
        Ok(())
    }
}
