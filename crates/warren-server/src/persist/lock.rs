//! One warren per data directory: an exclusive `flock` on `warren.pid` for the life of
//! the process, the file holding its PID so that a second broker can say who has it.
//! The kernel drops the lock when the process ends, however it ends (SIGKILL included),
//! so a stale file never keeps a broker from starting.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, Write},
    path::{Path, PathBuf},
};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "warren.pid";

/// Held for as long as the broker runs.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data directory {} is in use by another warren (PID {pid}); stop it or choose another --data-dir", dir.display())]
    Held { dir: PathBuf, pid: String },
    #[error("cannot lock data directory {}: {source}", dir.display())]
    Io { dir: PathBuf, source: io::Error },
}

/// Takes the data directory's lock, or says which process holds it.
pub fn lock(dir: &Path) -> Result<DataDirLock, LockError> {
    let io_err = |source| LockError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(io_err)?;
    if !try_lock(&file).map_err(io_err)? {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = match pid.trim() {
            "" => "unknown".to_string(),
            p => p.to_string(),
        };
        return Err(LockError::Held {
            dir: dir.to_path_buf(),
            pid,
        });
    }
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    writeln!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(DataDirLock { _file: file })
}

/// True when the lock was taken, false when another process holds it.
#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<bool> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_names_the_holder() {
        let dir = std::env::temp_dir().join(format!(
            "warren-lock-{}-{}",
            std::process::id(),
            crate::util::clock::now_ms()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let held = lock(&dir).expect("first lock");
        match lock(&dir) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected the directory to be held, got {other:?}"),
        }
        drop(held);
        assert!(lock(&dir).is_ok(), "free again once the holder is gone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
