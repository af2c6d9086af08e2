//! Locks that survive a panic: a std mutex or rwlock poisoned by a thread
//! that panicked while holding it is used as it is.
//!
//! That is sound here because every critical section in the engine leaves
//! its data consistent before anything in it can panic; refusing the data
//! would turn one panicked background thread into an engine that can never
//! be read or closed.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks a std mutex, recovering the data if a panicking thread poisoned it
/// (every critical section leaves the data consistent before it can panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks a std rwlock, recovering from poisoning as [`lock`] does.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks a std rwlock, recovering from poisoning as [`lock`] does.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
