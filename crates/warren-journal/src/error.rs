use std::io;
use std::path::PathBuf;

use crate::Location;

/// Errors of the journal and the metadata store.
///
/// Write-path failures (`Io` from an append's callback, `DiskFull`, `SyncFailed`) mean the
/// records of that batch may or may not be on disk: the publisher must not be told they
/// are safe. Records stored by earlier successful batches are untouched: a failed batch is
/// truncated away and the segment it was writing is sealed, so later appends go to a fresh
/// segment file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file system is out of space (ENOSPC or EDQUOT).
    #[error("disk full writing {path}")]
    DiskFull { path: PathBuf },
    /// fdatasync failed; after such a failure the kernel may have dropped dirty pages, so
    /// the batch is reported lost and its segment is not written again.
    #[error("fdatasync of {path} failed: {source}")]
    SyncFailed { path: PathBuf, source: io::Error },
    /// Any other I/O failure, with the file it concerned.
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The record at a location is damaged (checksum mismatch) or is not a record.
    #[error("corrupt record at {location}")]
    Corrupt { location: Location },
    /// The location names a segment that no longer exists (fully acknowledged and reclaimed)
    /// or never existed.
    #[error("no segment for {location}")]
    NoSuchSegment { location: Location },
    /// A field does not fit the on-disk format (more than 65535 queues, a body over 4 GiB).
    #[error("record too large: {0}")]
    TooLarge(&'static str),
    /// An append must name at least one queue.
    #[error("record routed to no queue")]
    NoQueues,
    /// The journal was closed, or its writer thread is gone.
    #[error("journal closed")]
    Closed,
    /// meta.json exists but cannot be parsed.
    #[error("corrupt metadata file {path}: {source}")]
    CorruptMeta {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Serializing metadata failed.
    #[error("cannot serialize metadata: {0}")]
    Serialize(serde_json::Error),
}

impl JournalError {
    /// Classifies a write error: ENOSPC/EDQUOT become [`JournalError::DiskFull`].
    pub(crate) fn write(path: PathBuf, source: io::Error) -> Self {
        // ENOSPC = 28, EDQUOT = 122 on Linux; StorageFull is the stable kind for ENOSPC.
        if source.kind() == io::ErrorKind::StorageFull
            || matches!(source.raw_os_error(), Some(28 | 122))
        {
            JournalError::DiskFull { path }
        } else {
            JournalError::Io { path, source }
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        JournalError::Io {
            path: path.into(),
            source,
        }
    }

    /// Errors are handed to several callbacks of one batch; io::Error is not Clone.
    pub(crate) fn duplicate(&self) -> Self {
        let copy = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            JournalError::DiskFull { path } => JournalError::DiskFull { path: path.clone() },
            JournalError::SyncFailed { path, source } => JournalError::SyncFailed {
                path: path.clone(),
                source: copy(source),
            },
            JournalError::Io { path, source } => JournalError::Io {
                path: path.clone(),
                source: copy(source),
            },
            JournalError::Corrupt { location } => JournalError::Corrupt {
                location: *location,
            },
            JournalError::NoSuchSegment { location } => JournalError::NoSuchSegment {
                location: *location,
            },
            JournalError::TooLarge(s) => JournalError::TooLarge(s),
            JournalError::NoQueues => JournalError::NoQueues,
            JournalError::Closed => JournalError::Closed,
            JournalError::CorruptMeta { path, source } => JournalError::Io {
                path: path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, source.to_string()),
            },
            JournalError::Serialize(e) => JournalError::Io {
                path: PathBuf::new(),
                source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            },
        }
    }
}
