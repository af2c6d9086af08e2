//! Checkpoints and their install under the faults: the admin task takes
//! a checkpoint while the clients write, restores it into a second engine
//! and checks it holds a prefix of every client's history between what
//! was acknowledged before the call and what was issued by its return;
//! a later boot may install the last good checkpoint into the node's own
//! engine, after which the model continues from the checkpoint's cut.
//! Checkpoint tables are hard links of the engine's (the seam's links
//! share one inode), so compaction deleting the originals leaves them.

use super::shared::*;
use super::verify::check_content;
use crate::fs::SimIo;
use crate::scenario::{FaultKind, Scenario};
use ballast_storage::fs::{remove_dir_with_files, FileSystem};
use ballast_storage::{wal_dir, Checkpoint, Db};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// Where checkpoints go (`{CP_DIR}/{epoch}-{i}`).
pub(crate) const CP_DIR: &str = "/ballast-cp";
/// Where a checkpoint is restored to be checked.
const RESTORE_DIR: &str = "/ballast-restore";

/// Makes [`CP_DIR`] exist durably (its entry in `/` is the caller's to
/// sync: the engine fsyncs only the checkpoint directory and its parent).
pub(crate) fn prepare(fs: &dyn FileSystem) -> std::io::Result<()> {
    if !fs.exists(Path::new(CP_DIR))? {
        fs.create_dir_all(Path::new(CP_DIR))?;
        fs.sync_dir(Path::new("/"))?;
    }
    Ok(())
}

/// Takes checkpoint `name` of `db`, restores it into a fresh engine and
/// checks it; on success it becomes the run's saved checkpoint (the
/// previous one's directory is removed). Errors are judged as the
/// workload's are.
pub(crate) async fn take_and_check(db: Rc<Db>, sh: Sh, scenario: Scenario, name: String) {
    let fault = scenario.fault;
    let io = sh.borrow().io.clone();
    let fs = crate::fs::TurmoilFs::new(io.clone());
    let fs: &dyn FileSystem = &*fs;
    let dir = Path::new(CP_DIR).join(&name);
    // Completed operations before the call: the checkpoint holds them all.
    let lo: Vec<usize> = {
        let s = sh.borrow();
        s.model
            .clients
            .iter()
            .map(|ops| ops.iter().take_while(|o| o.acked.is_some()).count())
            .collect()
    };
    let taken = db.checkpoint(&dir).await;
    let hi: Vec<usize> = sh.borrow().model.clients.iter().map(Vec::len).collect();
    let cp = match taken {
        Ok(cp) => cp,
        Err(e) => return judge_error(&sh, fault, &format!("checkpoint {name}"), &e),
    };
    let what = format!("checkpoint {name}");
    let db2 = match restore(&cp, scenario, &io, fs).await {
        Ok(db2) => db2,
        Err(e) => return judge_error(&sh, fault, &format!("restore of {what}"), &e),
    };
    let checked = check_content(&db2, &mut sh.borrow_mut(), &what);
    let _ = db2.close().await;
    let _ = remove_restore(fs);
    let cut = match checked {
        Ok(Some((cut, _))) => cut,
        Ok(None) => return,
        Err(e) => return judge_error(&sh, fault, &format!("reading the restored {what}"), &e),
    };
    {
        let mut s = sh.borrow_mut();
        for (c, &m) in cut.iter().enumerate() {
            if m < lo[c] || m > hi[c] {
                s.violation(format!(
                    "{what}: client {c} holds {m} operations, not between the {} acknowledged before it and the {} issued by its return",
                    lo[c], hi[c]
                ));
                return;
            }
        }
    }
    let mut s = sh.borrow_mut();
    let lineage = cut
        .iter()
        .enumerate()
        .map(|(c, &m)| s.model.clients[c][..m].to_vec())
        .collect();
    let old = s.checkpoint.replace(SavedCheckpoint { cp, lineage });
    s.checkpoints_checked += 1;
    s.event(format!(
        "checkpoint {name}: restored and checked, cut {cut:?}"
    ));
    drop(s);
    if let Some(old) = old {
        let _ = remove_dir_with_files(fs, &old.cp.dir);
    }
}

/// Opens a fresh engine at [`RESTORE_DIR`] and installs `cp` into it.
async fn restore(
    cp: &Checkpoint,
    scenario: Scenario,
    io: &Arc<Mutex<SimIo>>,
    fs: &dyn FileSystem,
) -> ballast_storage::Result<Db> {
    remove_restore(fs).map_err(|e| ballast_storage::Error::io(Path::new(RESTORE_DIR), e))?;
    let mut o = options(scenario.preset, io.clone());
    // No WAL: the restored engine only installs and is read, and a WAL
    // fsync failing there must not count as the node's own.
    o.wal = false;
    let db = Db::open(RESTORE_DIR, o).await?;
    db.install(cp).await?;
    Ok(db)
}

/// Removes the restore engine's directory (its WAL directory first).
fn remove_restore(fs: &dyn FileSystem) -> std::io::Result<()> {
    let dir = PathBuf::from(RESTORE_DIR);
    remove_dir_with_files(fs, &wal_dir(&dir))?;
    remove_dir_with_files(fs, &dir)
}

/// An error from a checkpoint step: allowed (and recorded) under the
/// kinds that inject errors, a violation otherwise.
fn judge_error(sh: &Sh, fault: FaultKind, what: &str, e: &ballast_storage::Error) {
    let mut s = sh.borrow_mut();
    s.event(format!("{what} failed: {e}"));
    if !fault.errors_expected() {
        s.violation(format!("{what} failed without an injected fault: {e}"));
    }
}

/// At the start of a boot's workload, installs the run's saved checkpoint
/// into the node's engine: the model rolls back to the checkpoint's cut,
/// and the engine must read exactly that.
pub(crate) async fn install_saved(db: &Db, sh: &Sh, fault: FaultKind, epoch: u32) {
    let Some(saved) = sh.borrow().checkpoint.clone() else {
        return;
    };
    let what = format!("boot {epoch}: install of {}", saved.cp.dir.display());
    if let Err(e) = db.install(&saved.cp).await {
        return judge_error(sh, fault, &what, &e);
    }
    let mut s = sh.borrow_mut();
    s.model.clients = saved.lineage;
    s.installs += 1;
    match check_content(db, &mut s, &what) {
        Ok(Some((cut, keys))) => s.event(format!("{what}: installed, cut {cut:?} ({keys} keys)")),
        Ok(None) => {}
        Err(e) => {
            drop(s);
            judge_error(sh, fault, &format!("reading after the {what}"), &e);
        }
    }
}
