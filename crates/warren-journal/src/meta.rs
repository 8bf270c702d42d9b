//! A small JSON document replaced atomically: write a temp file, fdatasync it, rename it
//! over `meta.json`, fsync the directory. A crash leaves either the old or the new file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::JournalError;

const FILE: &str = "meta.json";
const TMP: &str = "meta.json.tmp";

/// Atomic store for the server's durable metadata (queues, exchanges, bindings, id map).
#[derive(Debug, Clone)]
pub struct MetaStore {
    dir: PathBuf,
}

impl MetaStore {
    /// Uses `dir` (created if missing) to hold `meta.json`.
    pub fn new(dir: impl AsRef<Path>) -> Result<MetaStore, JournalError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| JournalError::io(&dir, e))?;
        Ok(MetaStore { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Replaces the stored document with `value`, durably.
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), JournalError> {
        let json = serde_json::to_vec_pretty(value).map_err(JournalError::Serialize)?;
        let tmp = self.dir.join(TMP);
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| JournalError::write(tmp.clone(), e))?;
        f.write_all(&json)
            .map_err(|e| JournalError::write(tmp.clone(), e))?;
        f.sync_data().map_err(|e| JournalError::SyncFailed {
            path: tmp.clone(),
            source: e,
        })?;
        drop(f);
        let path = self.path();
        std::fs::rename(&tmp, &path).map_err(|e| JournalError::io(&path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| JournalError::SyncFailed {
                path: self.dir.clone(),
                source: e,
            })
    }

    /// The stored document, `None` if none was ever saved. A leftover temp file (a crash
    /// during `save`) is reported and removed; the previous document stays authoritative.
    /// A `meta.json` that does not parse is [`JournalError::CorruptMeta`].
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, JournalError> {
        let tmp = self.dir.join(TMP);
        if tmp.exists() {
            tracing::warn!(path = %tmp.display(), "ignoring metadata left by an interrupted save");
            if let Err(e) = std::fs::remove_file(&tmp) {
                tracing::warn!(path = %tmp.display(), error = %e, "cannot remove stale metadata temp file");
            }
        }
        let path = self.path();
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(JournalError::io(path, e)),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|source| JournalError::CorruptMeta { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("warren-meta-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn missing_then_saved_then_replaced() {
        let d = dir("rt");
        let m = MetaStore::new(&d).unwrap();
        assert_eq!(m.load::<BTreeMap<String, u64>>().unwrap(), None);
        let mut v = BTreeMap::from([("q1".to_string(), 1u64)]);
        m.save(&v).unwrap();
        assert_eq!(m.load::<BTreeMap<String, u64>>().unwrap(), Some(v.clone()));
        v.insert("q2".into(), 2);
        m.save(&v).unwrap();
        assert_eq!(MetaStore::new(&d).unwrap().load().unwrap(), Some(v));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn leftover_temp_is_ignored_and_removed() {
        let d = dir("tmp");
        let m = MetaStore::new(&d).unwrap();
        m.save(&vec![1u32, 2]).unwrap();
        std::fs::write(d.join(TMP), b"{half a docu").unwrap();
        assert_eq!(m.load::<Vec<u32>>().unwrap(), Some(vec![1, 2]));
        assert!(!d.join(TMP).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_file_is_a_typed_error() {
        let d = dir("bad");
        let m = MetaStore::new(&d).unwrap();
        std::fs::write(m.path(), b"{\"q\": ").unwrap();
        assert!(matches!(
            m.load::<BTreeMap<String, u64>>(),
            Err(JournalError::CorruptMeta { .. })
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
