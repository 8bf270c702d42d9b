//! Start-up scan: rebuild per-queue message lists and per-segment reference counts from
//! the segment and ack files, repairing what can be repaired and reporting the rest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format::{self, AckKind, Bad, ACK_ENTRY_LEN, MAGIC};
use crate::journal::{acks_path, seg_path, SegRefs};
use crate::{JournalError, Location, QueueId};

/// A surviving persistent message of one queue. Deliberately small (48 bytes): the rest
/// of the record is read on demand with [`crate::Journal::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredMessage {
    pub msg_id: u64,
    pub location: Location,
    pub expires_at_ms: Option<u64>,
    /// The message had been delivered (and not acked) before the restart.
    pub redelivered: bool,
}

/// What [`crate::Journal::open`] found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Per live queue, its surviving persistent messages in publish order.
    pub queues: HashMap<QueueId, Vec<RecoveredMessage>>,
    /// Messages of queues that are neither live nor deleted (no `Forgotten` mark): their
    /// queue is unknown, e.g. its metadata was lost. They stay on disk, referenced under
    /// their queue id, until the owner re-attaches them or forgets the queue.
    pub orphans: HashMap<QueueId, Vec<RecoveredMessage>>,
    pub report: RecoveryReport,
}

/// Figures and damage found by recovery.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments_scanned: u64,
    /// Segment files deleted because nothing live was left in them.
    pub segments_reclaimed: u64,
    /// Valid records found (persistent or not, live or not).
    pub records: u64,
    /// (message, queue) pairs recovered, orphans included.
    pub messages: u64,
    /// Of those, the pairs of unknown queues (see [`Recovery::orphans`]).
    pub orphaned: u64,
    /// Highest msg_id seen in any valid record (or damaged record with a valid header).
    pub max_msg_id: u64,
    /// Bytes cut off the ends of segment and ack files (torn writes).
    pub torn_bytes_truncated: u64,
    /// Records skipped because their body or header failed its checksum.
    pub corrupt_records: u64,
    /// Messages lost to damaged records whose header was intact, per live queue.
    pub lost: BTreeMap<QueueId, u64>,
    /// Damaged stretches whose header was unreadable, so the queues they held are unknown.
    pub unattributed_corrupt_regions: u64,
    /// Files that were unreadable, malformed, or not the journal's; left in place.
    pub skipped_files: Vec<(PathBuf, String)>,
}

pub(crate) struct Recovered {
    pub recovery: Recovery,
    pub refs: HashMap<u64, SegRefs>,
    pub disk: HashMap<u64, (u64, u64)>,
    pub ack_lens: HashMap<u64, u64>,
    pub next_seq: u64,
}

#[derive(Default)]
struct Files {
    seg: bool,
    acks: bool,
}

fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (stem, is_seg) = if let Some(s) = name.strip_suffix(".seg") {
        (s, true)
    } else {
        (name.strip_suffix(".acks")?, false)
    };
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((u64::from_str_radix(stem, 16).ok()?, is_seg))
}

pub(crate) fn recover(dir: &Path, live: &HashSet<QueueId>) -> Result<Recovered, JournalError> {
    let mut report = RecoveryReport::default();
    let mut files: BTreeMap<u64, Files> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| JournalError::io(dir, e))?;
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list journal entry");
                continue;
            }
        };
        let name = entry.file_name();
        match name.to_str().and_then(parse_name) {
            Some((seq, true)) => files.entry(seq).or_default().seg = true,
            Some((seq, false)) => files.entry(seq).or_default().acks = true,
            None => {
                tracing::warn!(path = %entry.path().display(), "ignoring unknown file in journal directory");
                report
                    .skipped_files
                    .push((entry.path(), "not a journal file".into()));
            }
        }
    }
    let next_seq = files.keys().next_back().map_or(0, |s| s.saturating_add(1));
    let newest_seg = files.iter().rev().find(|(_, f)| f.seg).map(|(s, _)| *s);

    let mut queues: HashMap<QueueId, Vec<RecoveredMessage>> = HashMap::new();
    let mut orphans: HashMap<QueueId, Vec<RecoveredMessage>> = HashMap::new();
    let mut orphaned = 0u64;
    let mut all_refs = HashMap::new();
    let mut disk = HashMap::new();
    let mut ack_lens = HashMap::new();
    let mut window = Vec::new();
    for (seq, f) in &files {
        let seq = *seq;
        let apath = acks_path(dir, seq);
        if !f.seg {
            // Orphan left by a crash between deleting a segment and its ack file.
            if let Err(e) = std::fs::remove_file(&apath) {
                tracing::warn!(path = %apath.display(), error = %e, "cannot remove orphan ack file");
            }
            continue;
        }
        let AckSets {
            acked,
            delivered,
            forgotten,
            len: ack_len,
        } = if f.acks {
            load_acks(&apath, &mut report)
        } else {
            AckSets::default()
        };
        let spath = seg_path(dir, seq);
        let (file, file_len) = match open_regular(&spath) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %spath.display(), error = %e, "cannot read journal segment; skipped");
                report.skipped_files.push((spath, e.to_string()));
                continue;
            }
        };
        let mut refs = SegRefs::default();
        let scanned = scan_segment(
            seq,
            &file,
            file_len,
            &mut window,
            &spath,
            Some(seq) == newest_seg,
            &mut report,
            |header, offset, len| {
                if !header.persistent {
                    return;
                }
                let Ok(offset32) = u32::try_from(offset) else {
                    return;
                };
                let Ok(len32) = u32::try_from(len) else {
                    return;
                };
                let location = Location {
                    segment: seq,
                    offset: offset32,
                    len: len32,
                };
                for q in &header.queues {
                    if acked.contains(&(*q, offset)) {
                        continue;
                    }
                    let list = if live.contains(q) {
                        queues.entry(*q).or_default()
                    } else if forgotten.contains(q) || q.is_transient() {
                        continue;
                    } else {
                        orphaned += 1;
                        orphans.entry(*q).or_default()
                    };
                    list.push(RecoveredMessage {
                        msg_id: header.msg_id,
                        location,
                        expires_at_ms: header.expires_at_ms,
                        redelivered: delivered.contains(&(*q, offset)),
                    });
                    *refs.per_queue.entry(*q).or_default() += 1;
                    refs.total += 1;
                }
            },
            |header, offset| {
                if !header.persistent {
                    return Vec::new();
                }
                header
                    .queues
                    .iter()
                    .copied()
                    .filter(|q| live.contains(q) && !acked.contains(&(*q, offset)))
                    .collect()
            },
        );
        let end = match scanned {
            Ok(end) => end,
            Err(e) => {
                // Read error part way: keep the file, drop what was gathered from it.
                tracing::warn!(path = %spath.display(), error = %e, "cannot read journal segment; skipped");
                report.skipped_files.push((spath, e.to_string()));
                for list in queues.values_mut().chain(orphans.values_mut()) {
                    while list.last().is_some_and(|m| m.location.segment == seq) {
                        list.pop();
                    }
                }
                continue;
            }
        };
        report.segments_scanned += 1;
        if end < file_len {
            report.torn_bytes_truncated += file_len - end;
            if let Err(e) = OpenOptions::new()
                .write(true)
                .open(&spath)
                .and_then(|file| file.set_len(end).and_then(|()| file.sync_all()))
            {
                tracing::warn!(path = %spath.display(), error = %e, "cannot truncate torn segment tail");
            }
        }
        if refs.total == 0 {
            // Nothing live: reclaim now (segment first, see the crate docs).
            match std::fs::remove_file(&spath) {
                Ok(()) => {
                    report.segments_reclaimed += 1;
                    if f.acks {
                        let _ = std::fs::remove_file(&apath);
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %spath.display(), error = %e, "cannot delete reclaimed segment");
                }
            }
            continue;
        }
        report.messages += refs.total;
        disk.insert(seq, (end, ack_len));
        ack_lens.insert(seq, ack_len);
        all_refs.insert(seq, refs);
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    report.orphaned = orphaned;
    if !report.lost.is_empty() || report.unattributed_corrupt_regions > 0 {
        tracing::warn!(
            lost = ?report.lost,
            unattributed_corrupt_regions = report.unattributed_corrupt_regions,
            "journal recovery lost messages to damaged records"
        );
    }
    tracing::info!(
        segments = report.segments_scanned,
        records = report.records,
        messages = report.messages,
        orphaned = report.orphaned,
        reclaimed = report.segments_reclaimed,
        torn_bytes = report.torn_bytes_truncated,
        corrupt = report.corrupt_records,
        "journal recovered"
    );
    Ok(Recovered {
        recovery: Recovery {
            queues,
            orphans,
            report,
        },
        refs: all_refs,
        disk,
        ack_lens,
        next_seq,
    })
}

/// Opens a regular file and returns its length: a journal name pointing at a device or a
/// directory must not hang or fail the start.
fn open_regular(path: &Path) -> std::io::Result<(File, u64)> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta.len()))
}

/// Reads a regular file, no more than its length: a journal name pointing at a device or
/// a directory must not hang or fail the start.
fn read_regular(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    file.take(meta.len()).read_to_end(buf)
}

/// What one segment's ack file says.
#[derive(Default)]
struct AckSets {
    acked: HashSet<(QueueId, u64)>,
    delivered: HashSet<(QueueId, u64)>,
    /// Queues deleted while they held references in the segment.
    forgotten: HashSet<QueueId>,
    /// The file's length once a torn tail is cut off.
    len: u64,
}

/// Reads an ack file, cutting a torn partial entry off its end. Damaged entries are
/// skipped (fixed size keeps the rest aligned).
fn load_acks(path: &Path, report: &mut RecoveryReport) -> AckSets {
    let mut sets = AckSets::default();
    let mut data = Vec::new();
    match read_regular(path, &mut data) {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read ack file; its acks are ignored");
            report
                .skipped_files
                .push((path.to_path_buf(), e.to_string()));
            return sets;
        }
    }
    let mut bad = 0u64;
    for e in data.chunks_exact(ACK_ENTRY_LEN) {
        match format::decode_ack(e) {
            Some((q, off, AckKind::Acked)) => {
                sets.acked.insert((q, off));
            }
            Some((q, off, AckKind::Delivered)) => {
                sets.delivered.insert((q, off));
            }
            Some((q, _, AckKind::Forgotten)) => {
                sets.forgotten.insert(q);
            }
            None => bad += 1,
        }
    }
    if bad > 0 {
        tracing::warn!(path = %path.display(), entries = bad, "damaged ack entries ignored; those messages may be redelivered");
    }
    let len = data.len() as u64;
    let tail = len % ACK_ENTRY_LEN as u64;
    if tail != 0 {
        report.torn_bytes_truncated += tail;
        if let Err(e) = OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(len - tail))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot truncate torn ack file");
        }
    }
    sets.len = len - tail;
    sets
}

/// Bodies up to this size are read and checksummed during recovery; larger ones are
/// skipped over (only their header is read) and checked when [`crate::Journal::read`]
/// fetches them.
const VERIFY_BODY_MAX: u64 = 64 * 1024;
/// Read-ahead of the sequential scan.
const WINDOW: u64 = 4 * 1024 * 1024;

/// Sequential reads of a segment through a reusable buffer.
struct Window<'a> {
    file: &'a File,
    len: u64,
    buf: &'a mut Vec<u8>,
    start: u64,
}

impl Window<'_> {
    /// Up to `n` bytes at `pos` (fewer at the end of the file), reading `readahead` bytes
    /// when they are not buffered.
    fn get(&mut self, pos: u64, n: u64, readahead: u64) -> std::io::Result<&[u8]> {
        let end = pos.saturating_add(n).min(self.len);
        let have = pos >= self.start && end <= self.start + self.buf.len() as u64;
        if !have {
            let size = n.max(readahead).min(self.len.saturating_sub(pos));
            let size = usize::try_from(size).map_err(std::io::Error::other)?;
            self.buf.clear();
            self.buf.resize(size, 0);
            self.file.read_exact_at(self.buf, pos)?;
            self.start = pos;
        }
        let from = usize::try_from(pos - self.start).map_err(std::io::Error::other)?;
        let to = usize::try_from(end - self.start).map_err(std::io::Error::other)?;
        Ok(self.buf.get(from..to).unwrap_or_default())
    }

    /// The valid record at `pos`, or `None` for anything unusual (left to `scan_slice`).
    fn record_at(&mut self, pos: u64) -> std::io::Result<Option<(format::Header, usize)>> {
        let fixed = self.get(pos, format::FIXED_LEN as u64, WINDOW)?;
        let Some((header_len, body_len)) = format::peek_lengths(fixed) else {
            return Ok(None);
        };
        let fixed_and_header = format::FIXED_LEN as u64 + header_len;
        let total = fixed_and_header + body_len + format::TRAILER_LEN as u64;
        if pos + total > self.len {
            return Ok(None);
        }
        if body_len <= VERIFY_BODY_MAX {
            let bytes = self.get(pos, total, WINDOW)?;
            Ok(format::parse_record(bytes).ok().map(|p| (p.header, p.len)))
        } else {
            // Read the header alone; the body is skipped.
            let bytes = self.get(pos, fixed_and_header, fixed_and_header)?;
            Ok(format::parse_header(bytes).ok())
        }
    }
}

/// Walks the records of one segment, calling `on_record(header, offset, len)` for each
/// valid one and `lost(header, offset) -> queues that lose it` for each whose body is
/// damaged. Reads sequentially and skips large bodies; at the first anomaly it reads the
/// rest of the file and scans it exactly. Returns the length the segment should have
/// (less than `file_len` after a torn or damaged tail).
#[allow(clippy::too_many_arguments)]
fn scan_segment(
    seq: u64,
    file: &File,
    file_len: u64,
    buf: &mut Vec<u8>,
    path: &Path,
    newest: bool,
    report: &mut RecoveryReport,
    mut on_record: impl FnMut(&format::Header, u64, usize),
    lost: impl Fn(&format::Header, u64) -> Vec<QueueId>,
) -> std::io::Result<u64> {
    let mut win = Window {
        file,
        len: file_len,
        buf,
        start: 0,
    };
    win.buf.clear();
    let mut pos = 0u64;
    while pos < file_len {
        match win.record_at(pos)? {
            Some((header, len)) => {
                report.records += 1;
                report.max_msg_id = report.max_msg_id.max(header.msg_id);
                on_record(&header, pos, len);
                pos += len as u64;
            }
            None => break,
        }
    }
    if pos >= file_len {
        return Ok(file_len);
    }
    let rest_len = usize::try_from(file_len - pos).map_err(std::io::Error::other)?;
    let mut rest = vec![0u8; rest_len];
    file.read_exact_at(&mut rest, pos)?;
    let kept = scan_slice(seq, &rest, pos, path, newest, report, &mut on_record, &lost);
    Ok(pos + kept)
}

/// Exact scan of `buf`, the bytes of a segment from offset `base` to its end: every body
/// checked, damaged stretches skipped by searching for the next valid header. Returns the
/// length (relative to `base`) the segment should keep.
#[allow(clippy::too_many_arguments)]
fn scan_slice(
    seq: u64,
    buf: &[u8],
    base: u64,
    path: &Path,
    newest: bool,
    report: &mut RecoveryReport,
    on_record: &mut impl FnMut(&format::Header, u64, usize),
    lost: &impl Fn(&format::Header, u64) -> Vec<QueueId>,
) -> u64 {
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = buf.get(pos..).unwrap_or_default();
        match format::parse_record(rest) {
            Ok(p) => {
                report.records += 1;
                report.max_msg_id = report.max_msg_id.max(p.header.msg_id);
                on_record(&p.header, base + pos as u64, p.len);
                pos += p.len;
            }
            Err(Bad::Body) => {
                // The header is intact: skip exactly this record and name its queues.
                let Ok((header, len)) = format::parse_header(rest) else {
                    break;
                };
                report.corrupt_records += 1;
                report.max_msg_id = report.max_msg_id.max(header.msg_id);
                let losers = lost(&header, base + pos as u64);
                for q in &losers {
                    *report.lost.entry(*q).or_default() += 1;
                }
                let names: Vec<String> = losers.iter().map(|q| q.to_string()).collect();
                tracing::warn!(
                    path = %path.display(),
                    offset = base + pos as u64,
                    msg_id = header.msg_id,
                    queues = ?names,
                    lost_messages = losers.len(),
                    "corrupt message body in journal; record skipped"
                );
                pos += len;
            }
            Err(Bad::Short | Bad::Header) => match resync(buf, pos + 1) {
                Some(next) => {
                    report.corrupt_records += 1;
                    report.unattributed_corrupt_regions += 1;
                    tracing::warn!(
                        path = %path.display(),
                        offset = base + pos as u64,
                        skipped_bytes = next - pos,
                        "corrupt record header in journal; messages in it are lost, queues unknown"
                    );
                    pos = next;
                }
                None => {
                    let torn = buf.len() - pos;
                    if newest {
                        tracing::info!(path = %path.display(), offset = base + pos as u64, bytes = torn, "truncating torn journal tail");
                    } else {
                        report.unattributed_corrupt_regions += 1;
                        tracing::warn!(path = %path.display(), segment = seq, offset = base + pos as u64, bytes = torn, "damaged end of a sealed journal segment cut off");
                    }
                    return pos as u64;
                }
            },
        }
    }
    pos.min(buf.len()) as u64
}

/// Finds the next offset at or after `from` holding a record with a valid header.
fn resync(buf: &[u8], from: usize) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    let mut at = from;
    loop {
        let rest = buf.get(at..)?;
        let i = rest.windows(4).position(|w| w == magic)?;
        let cand = at + i;
        if let Ok((_, len)) = format::parse_header(buf.get(cand..)?) {
            if cand + len <= buf.len() {
                return Some(cand);
            }
        }
        at = cand + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn file_names() {
        assert_eq!(parse_name("00000000000000ff.seg"), Some((255, true)));
        assert_eq!(parse_name("00000000000000ff.acks"), Some((255, false)));
        assert_eq!(parse_name("ff.seg"), None);
        assert_eq!(parse_name("000000000000000g.seg"), None);
        assert_eq!(parse_name("00000000000000ff.seg.tmp"), None);
        assert_eq!(parse_name("+000000000000001.seg"), None);
    }
}
