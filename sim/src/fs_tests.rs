//! Tests of the simulated disk seam: Linux fsync semantics, set_len
//! rollback at power loss, per-instance state.

use super::*;
use std::cell::RefCell;
use std::rc::Rc;

const DIR: &str = "/d";
const FILE: &str = "/d/f";

/// Runs `first` on a fresh host, then power loss (crash + bounce) if
/// `power`, or a process crash, then `second`; returns what `second`
/// returned. Each boot gets its own seam over `io`.
fn two_boots<F1, F2, T>(io: Arc<Mutex<SimIo>>, power: bool, first: F1, second: F2) -> T
where
    F1: Fn(Arc<TurmoilFs>) -> io::Result<()> + 'static,
    F2: Fn(Arc<TurmoilFs>) -> io::Result<T> + 'static,
    T: Clone + 'static,
{
    let mut sim = turmoil::Builder::new().build();
    let boots = Rc::new(RefCell::new(0u32));
    let out: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
    let driver = io.clone();
    let first = Rc::new(first);
    let second = Rc::new(second);
    {
        let (boots, out) = (boots.clone(), out.clone());
        sim.host("h", move || {
            let (boots, out, io) = (boots.clone(), out.clone(), io.clone());
            let (first, second) = (first.clone(), second.clone());
            async move {
                *boots.borrow_mut() += 1;
                let fs = TurmoilFs::new(io);
                if *boots.borrow() == 1 {
                    first(fs).map_err(|e| e.to_string())?;
                } else {
                    *out.borrow_mut() = Some(second(fs).map_err(|e| e.to_string())?);
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    for _ in 0..100 {
        sim.step().expect("first boot");
    }
    lock(&driver).crashed(power);
    if power {
        sim.crash("h");
    }
    sim.bounce("h");
    for _ in 0..100 {
        sim.step().expect("second boot");
        if out.borrow().is_some() {
            break;
        }
    }
    let v = out.borrow().clone();
    v.expect("the second boot finished")
}

/// A file `FILE` of `len` bytes of 7s, fsynced with its directory entry.
fn durable_file(fs: &TurmoilFs, len: usize) -> io::Result<DynFile> {
    fs.create_dir_all(Path::new(DIR))?;
    tfs::sync_dir("/")?;
    let f = fs.open(Path::new(FILE), OpenMode::CreateTruncate)?;
    f.write_all_at(&vec![7u8; len], 0)?;
    f.sync_data()?;
    fs.sync_dir(Path::new(DIR))?;
    Ok(f)
}

/// A disk whose `injectors` fire whenever they are armed.
fn always(injectors: Injectors) -> Arc<Mutex<SimIo>> {
    SimIo::new(3, Latency::NORMAL, injectors)
}

fn read_back(fs: &TurmoilFs) -> io::Result<Vec<u8>> {
    let f = fs.open(Path::new(FILE), OpenMode::Read)?;
    let mut buf = vec![0u8; f.len()? as usize];
    let n = f.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn power_loss_rolls_back_an_unsynced_set_len() {
    for (new_len, power, want) in [
        (100u64, true, 4096usize),
        (9000, true, 4096),
        (100, false, 100),
    ] {
        let io = SimIo::new(1, Latency::NORMAL, Injectors::default());
        let got = two_boots(
            io,
            power,
            move |fs| {
                let f = durable_file(&fs, 4096)?;
                f.set_len(new_len)
            },
            |fs| read_back(&fs),
        );
        assert_eq!(got.len(), want, "set_len({new_len}), power loss {power}");
        assert!(
            got.iter().all(|&b| b == 7),
            "the surviving bytes are the synced ones"
        );
    }
}

#[test]
fn a_failed_fsync_drops_the_pending_writes_and_the_retry_succeeds_without_them() {
    let io = always(Injectors {
        sync_error: 1.0,
        ..Injectors::default()
    });
    let driver = io.clone();
    let seen: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    let got = two_boots(
        io,
        true,
        move |fs| {
            let f = durable_file(&fs, 1024)?;
            lock(&driver).arm(true);
            f.write_all_at(&[9u8; 512], 512)?;
            f.write_all_at(&[9u8; 512], 1024)?;
            f.set_len(1200)?;
            let failed = f.sync_data().is_err();
            lock(&driver).arm(false);
            let after = read_back(&fs)?;
            let retry = f.sync_data().is_ok();
            log.borrow_mut().push(format!(
                "failed {failed} retry ok {retry} len after {} dropped {}",
                after.len(),
                lock(&driver).fired.dropped_writes
            ));
            Ok(())
        },
        |fs| read_back(&fs),
    );
    assert_eq!(
        seen.borrow().as_slice(),
        ["failed true retry ok true len after 1024 dropped 3"]
    );
    assert_eq!(
        got,
        vec![7u8; 1024],
        "the dropped writes never became durable"
    );
}

#[test]
fn two_sim_ios_share_nothing() {
    let failing = Injectors {
        write_error: 1.0,
        ..Injectors::default()
    };
    let (armed, other) = (always(failing), always(failing));
    lock(&armed).arm(true);
    let (a, b) = (armed.clone(), other.clone());
    let results = two_boots(
        SimIo::new(4, Latency::NORMAL, Injectors::default()),
        false,
        |_| Ok(()),
        move |_| {
            let write = |io: &Arc<Mutex<SimIo>>| -> io::Result<bool> {
                let fs = TurmoilFs::new(io.clone());
                fs.create_dir_all(Path::new(DIR))?;
                let f = fs.open(Path::new(FILE), OpenMode::CreateTruncate)?;
                Ok(f.write_all_at(b"x", 0).is_ok())
            };
            Ok((write(&a)?, write(&b)?))
        },
    );
    assert_eq!(results, (false, true), "only the armed instance injects");
    assert_eq!(lock(&armed).fired.write_errors, 1);
    assert_eq!(lock(&other).fired, Fired::default());
}

#[test]
fn a_file_recreated_after_an_unsynced_unlink_keeps_its_fsynced_data() {
    let io = SimIo::new(5, Latency::NORMAL, Injectors::default());
    let got = two_boots(
        io,
        true,
        |fs| {
            durable_file(&fs, 100)?;
            fs.remove_file(Path::new(FILE))?;
            let f = fs.open(Path::new(FILE), OpenMode::CreateNew)?;
            f.write_all_at(&[5u8; 300], 0)?;
            f.sync_data()?;
            fs.sync_dir(Path::new(DIR))
        },
        |fs| read_back(&fs),
    );
    assert_eq!(got, vec![5u8; 300], "the new file's fsynced data survives");
}

/// A file removed with unsynced writes, its removal made durable, and a
/// new file renamed to its name (a Raft log segment recreated after a
/// truncation, from a prepared file): the new file never gets the removed
/// file's unsynced bytes. turmoil keys pending writes by path and applied
/// them at the new file's fsync (`replicated-power-loss` seed 568).
#[test]
fn a_file_at_a_removed_name_never_gets_the_removed_files_unsynced_writes() {
    let io = SimIo::new(7, Latency::NORMAL, Injectors::default());
    let got = two_boots(
        io,
        true,
        |fs| {
            let old = durable_file(&fs, 100)?;
            old.write_all_at(&[9u8; 200], 100)?;
            fs.remove_file(Path::new(FILE))?;
            fs.sync_dir(Path::new(DIR))?;
            let tmp = Path::new("/d/f.prep");
            let f = fs.open(tmp, OpenMode::CreateNew)?;
            f.write_all_at(&[0u8; 300], 0)?;
            f.sync_data()?;
            fs.rename(tmp, Path::new(FILE))?;
            fs.sync_dir(Path::new(DIR))?;
            f.write_all_at(&[5u8; 50], 0)?;
            f.sync_data()
        },
        |fs| read_back(&fs),
    );
    let mut want = vec![5u8; 50];
    want.resize(300, 0);
    assert_eq!(got, want, "the removed file's unsynced bytes stayed away");
}

/// Makes `dir` (under [`DIR`]) and in it `file`, `len` bytes of `fill`,
/// every step durable.
fn durable_file_in(
    fs: &TurmoilFs,
    dir: &Path,
    file: &Path,
    fill: u8,
    len: usize,
) -> io::Result<()> {
    fs.create_dir_all(dir)?;
    let f = fs.open(file, OpenMode::CreateNew)?;
    f.write_all_at(&vec![fill; len], 0)?;
    f.sync_data()?;
    fs.sync_dir(dir)?;
    fs.sync_dir(Path::new(DIR))
}

#[test]
fn a_directory_removed_and_created_again_takes_new_files() {
    let io = SimIo::new(6, Latency::NORMAL, Injectors::default());
    let sub = Path::new("/d/snap-1");
    let file = sub.join("000002.sst");
    let read = file.clone();
    let got = two_boots(
        io,
        false,
        move |fs| {
            durable_file_in(&fs, sub, &file, 1, 10)?;
            // A failed build's clean-up: the removal of the directory is
            // not fsynced before the same name is made again.
            fs.remove_file(&file)?;
            fs.remove_dir(sub)?;
            durable_file_in(&fs, sub, &file, 2, 20)
        },
        move |fs| ballast_storage::fs::read_file(&*fs, &read),
    );
    assert_eq!(got, vec![2u8; 20], "the new directory's file is there");
}

/// A directory emptied and removed, its removal made durable by the
/// parent's fsync, then a power loss: its files must not come back. A
/// POSIX rmdir needs the directory empty, so once it is durable the
/// unlinks before it are too; turmoil kept them pending (they wait for an
/// fsync of the directory itself, which no longer exists), the power loss
/// undid them, and the files reappeared when a directory of the same name
/// was made again (`cluster-throughput-disk-wipe` seed 9007: a replaced
/// node's first snapshot install failed with "file already exists").
#[test]
fn a_removed_directory_does_not_bring_its_files_back_after_a_power_loss() {
    let io = SimIo::new(8, Latency::NORMAL, Injectors::default());
    let sub = Path::new("/d/snap-1");
    let file = sub.join("000002.sst");
    let (file2, sub2) = (file.clone(), sub.to_path_buf());
    let got = two_boots(
        io,
        true,
        move |fs| {
            durable_file_in(&fs, sub, &file, 1, 10)?;
            fs.remove_file(&file)?;
            fs.remove_dir(sub)?;
            fs.sync_dir(Path::new(DIR))
        },
        move |fs| {
            fs.create_dir_all(&sub2)?;
            let listed = fs.list_dir(&sub2)?;
            let created = fs.open(&file2, OpenMode::CreateNew).is_ok();
            Ok((listed, created))
        },
    );
    assert_eq!(
        got,
        (Vec::<String>::new(), true),
        "the removed directory's file came back"
    );
}

#[test]
fn a_file_replaced_twice_by_rename_keeps_the_second_content() {
    // The identity file's atomic replace, twice, the first time with a
    // failed directory fsync: `cluster-durable-mixed` seed 76 found the
    // second replace leaving an empty file behind.
    let io = SimIo::new(7, Latency::NORMAL, Injectors::default());
    let got = two_boots(
        io,
        true,
        |fs| {
            fs.create_dir_all(Path::new(DIR))?;
            tfs::sync_dir("/")?;
            let tmp = Path::new("/d/f.tmp");
            for (byte, sync_dir) in [(1u8, false), (2u8, true)] {
                let f = fs.open(tmp, OpenMode::CreateTruncate)?;
                f.write_all_at(&[byte; 16], 0)?;
                f.sync_data()?;
                drop(f);
                fs.rename(tmp, Path::new(FILE))?;
                if sync_dir {
                    fs.sync_dir(Path::new(DIR))?;
                }
            }
            Ok(())
        },
        |fs| read_back(&fs),
    );
    assert_eq!(got, vec![2u8; 16], "the second replace is what survives");
}

const LINK: &str = "/e/g";

/// Reads the whole file at `path`, or `None` if it is not there.
fn read_opt(fs: &TurmoilFs, path: &str) -> io::Result<Option<Vec<u8>>> {
    if !fs.exists(Path::new(path))? {
        return Ok(None);
    }
    ballast_storage::fs::read_file(fs, Path::new(path)).map(Some)
}

/// `FILE` and its link `LINK` (in another directory) after a power loss,
/// when `first` ran on the first boot.
fn both_names_after_power_loss<F>(first: F) -> (Option<Vec<u8>>, Option<Vec<u8>>)
where
    F: Fn(&TurmoilFs) -> io::Result<()> + 'static,
{
    let io = SimIo::new(8, Latency::NORMAL, Injectors::default());
    two_boots(
        io,
        true,
        move |fs| {
            fs.create_dir_all(Path::new(DIR))?;
            fs.create_dir_all(Path::new("/e"))?;
            tfs::sync_dir("/")?;
            first(&fs)
        },
        |fs| Ok((read_opt(&fs, FILE)?, read_opt(&fs, LINK)?)),
    )
}

#[test]
fn a_linked_file_never_fsynced_loses_its_data_through_both_names() {
    let got = both_names_after_power_loss(|fs| {
        let f = fs.open(Path::new(FILE), OpenMode::CreateNew)?;
        f.write_all_at(&[4u8; 700], 0)?;
        fs.sync_dir(Path::new(DIR))?;
        fs.hard_link(Path::new(FILE), Path::new(LINK))?;
        fs.sync_dir(Path::new("/e"))
    });
    assert_eq!(
        got,
        (Some(Vec::new()), Some(Vec::new())),
        "both entries are durable, the unsynced bytes are lost through both"
    );
}

#[test]
fn an_fsync_through_the_link_makes_the_original_durable_too() {
    let got = both_names_after_power_loss(|fs| {
        let f = fs.open(Path::new(FILE), OpenMode::CreateNew)?;
        f.write_all_at(&[1u8; 300], 0)?;
        f.sync_data()?;
        fs.sync_dir(Path::new(DIR))?;
        // Written after the last fsync of the original, before the link.
        f.write_all_at(&[2u8; 100], 300)?;
        fs.hard_link(Path::new(FILE), Path::new(LINK))?;
        // The link's entry is never made durable.
        fs.open(Path::new(LINK), OpenMode::Write)?.sync_data()
    });
    let mut want = vec![1u8; 300];
    want.extend([2u8; 100]);
    assert_eq!(
        got,
        (Some(want), None),
        "one inode: the fsync through the link covered the original's write; \
         the link's own entry was not durable"
    );
}

#[test]
fn a_link_outlives_its_original_and_sees_writes_made_through_it() {
    let got = both_names_after_power_loss(|fs| {
        let f = durable_file(fs, 64)?;
        fs.hard_link(Path::new(FILE), Path::new(LINK))?;
        fs.sync_dir(Path::new("/e"))?;
        // Through the descriptor opened before the link: the same inode.
        f.write_all_at(&[3u8; 16], 64)?;
        f.sync_data()?;
        fs.remove_file(Path::new(FILE))?;
        fs.sync_dir(Path::new(DIR))
    });
    let mut want = vec![7u8; 64];
    want.extend([3u8; 16]);
    assert_eq!(got, (None, Some(want)));
}

#[test]
fn an_unlink_of_the_original_not_made_durable_is_undone_by_a_power_loss() {
    let got = both_names_after_power_loss(|fs| {
        durable_file(fs, 32)?;
        fs.hard_link(Path::new(FILE), Path::new(LINK))?;
        fs.sync_dir(Path::new("/e"))?;
        fs.remove_file(Path::new(FILE))?;
        let link = fs.open(Path::new(LINK), OpenMode::Write)?;
        link.write_all_at(&[6u8; 8], 0)?;
        link.sync_data()
    });
    let mut want = vec![7u8; 32];
    want[..8].copy_from_slice(&[6u8; 8]);
    assert_eq!(
        got,
        (Some(want.clone()), Some(want)),
        "the original's name is back, and names the linked inode"
    );
}

#[test]
fn linked_bytes_are_deleted_with_the_last_name_and_hidden_from_listings() {
    let io = SimIo::new(9, Latency::NORMAL, Injectors::default());
    let got = two_boots(
        io,
        false,
        |_| Ok(()),
        |fs| {
            durable_file(&fs, 10)?;
            fs.create_dir_all(Path::new("/e"))?;
            fs.hard_link(Path::new(FILE), Path::new(LINK))?;
            let linked = tfs::read_dir(INODE_DIR)?.count();
            let root = fs.list_dir(Path::new("/"))?;
            fs.remove_file(Path::new(FILE))?;
            fs.sync_dir(Path::new(DIR))?;
            let after_one = tfs::read_dir(INODE_DIR)?.count();
            fs.remove_file(Path::new(LINK))?;
            fs.sync_dir(Path::new("/e"))?;
            let after_both = tfs::read_dir(INODE_DIR)?.count();
            Ok((linked, root, after_one, after_both))
        },
    );
    assert_eq!(
        got,
        (1, vec!["d".to_string(), "e".to_string()], 1, 0),
        "one data file while a name is left, none after"
    );
}
