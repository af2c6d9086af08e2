//! Which keys a request of a connection touches, for the rule that a
//! request waits for the earlier conflicting requests of its connection
//! (see the module docs of [`super`]).
//!
//! Limits: above `CONFLICT_COMPARISONS_MAX` key comparisons two requests
//! are taken to conflict without comparing.

use bytes::Bytes;

use super::transaction::Job;
use crate::command::Command;

/// Above this many key comparisons two requests are taken to conflict
/// without comparing, so that checking costs little even for huge MSETs.
const CONFLICT_COMPARISONS_MAX: usize = 4096;

/// Which keys a request touches, for the conflict rule.
#[derive(Debug)]
pub(super) struct Access {
    pub(super) write: bool,
    /// Writes without reading first: such a request only needs the
    /// earlier conflicting writes to be ordered, not answered.
    pub(super) blind_write: bool,
    /// `None`: every key (SCAN, DBSIZE, INFO).
    pub(super) keys: Option<Vec<Bytes>>,
}

impl Access {
    pub(super) fn of(command: &Command) -> Access {
        let keys = |keys: &[Bytes]| Some(keys.to_vec());
        match command {
            Command::Get { key }
            | Command::Ttl { key, .. }
            | Command::Strlen { key }
            | Command::GetRange { key, .. }
            | Command::Type { key }
            | Command::ExpireTime { key, .. } => Access {
                write: false,
                blind_write: false,
                keys: keys(std::slice::from_ref(key)),
            },
            Command::Exists { keys: k }
            | Command::MGet { keys: k }
            | Command::Touch { keys: k } => Access {
                write: false,
                blind_write: false,
                keys: keys(k),
            },
            // PERSIST reads (on this connection's behalf) before it writes.
            Command::Persist { key } => Access {
                write: true,
                blind_write: false,
                keys: keys(std::slice::from_ref(key)),
            },
            // The conditions of SET NX, INCR and CAS are evaluated when the
            // log entry is applied, in log order: still one blind write.
            Command::Set { key, .. }
            | Command::GetDel { key }
            | Command::GetEx { key, .. }
            | Command::Append { key, .. }
            | Command::SetRange { key, .. }
            | Command::IncrByFloat { key, .. }
            | Command::IncrBy { key, .. }
            | Command::Expire { key, .. }
            | Command::ExpireAt { key, .. }
            | Command::SetNx { key, .. }
            | Command::GetSet { key, .. }
            | Command::Cas { key, .. } => Access {
                write: true,
                blind_write: true,
                keys: keys(std::slice::from_ref(key)),
            },
            Command::Del { keys: k } => Access {
                write: true,
                blind_write: true,
                keys: keys(k),
            },
            Command::Rename { from, to, .. } => Access {
                write: true,
                blind_write: true,
                keys: Some(vec![from.clone(), to.clone()]),
            },
            Command::MSet { pairs } | Command::MSetNx { pairs } => Access {
                write: true,
                blind_write: true,
                keys: Some(pairs.iter().map(|(key, _)| key.clone()).collect()),
            },
            // Every key: it waits for every earlier request of the
            // connection, and every later one waits for it.
            Command::FlushAll => Access {
                write: true,
                blind_write: true,
                keys: None,
            },
            // SCAN, DBSIZE, INFO, and (never dispatched) the local ones.
            _ => Access {
                write: false,
                blind_write: false,
                keys: None,
            },
        }
    }

    /// What a connection's job touches: a command's keys; WATCH reads its
    /// keys (so a later EXEC waits for it); EXEC reads and writes anything.
    pub(super) fn of_job(job: &Job) -> Access {
        match job {
            Job::Command(command) => Access::of(command),
            Job::Watch(keys, _) => Access {
                write: false,
                blind_write: false,
                keys: Some(keys.clone()),
            },
            Job::Exec(_) => Access {
                write: true,
                blind_write: false,
                keys: None,
            },
        }
    }

    pub(super) fn conflicts(&self, other: &Access) -> bool {
        if !self.write && !other.write {
            return false;
        }
        match (&self.keys, &other.keys) {
            (Some(mine), Some(theirs)) => {
                mine.len().saturating_mul(theirs.len()) > CONFLICT_COMPARISONS_MAX
                    || mine.iter().any(|key| theirs.contains(key))
            }
            _ => true,
        }
    }
}
