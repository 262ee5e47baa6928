//! The agent's on-disk spool: every report is written here before it is
//! sent, and leaves only when the controller acknowledges it, so neither a
//! broken link nor an agent restart loses one.
//!
//! Layout: `DIR/boot` holds the boot id the spooled reports belong to;
//! `DIR/transitions/` and `DIR/statistics/` hold segment files
//! `{first_seq:020}.seg`, appended to and rotated at [`SEGMENT_BYTES`].
//! A record is `len: u32 LE | crc32: u32 LE | seq: u64 LE | payload`, the
//! checksum covering `seq` and the payload.
//!
//! fsync policy: a transition record is `fdatasync`ed before `append`
//! returns (transitions are never dropped, so they must survive a power
//! cut); statistics records are written without a sync (a crash may lose
//! the last few seconds of statistics, never a transition), and their
//! lane is bounded: beyond [`SpoolConfig::statistics_max_bytes`] its
//! oldest segments are dropped and counted.
//!
//! On open, every record is checked; at the first bad or truncated record
//! of a segment the file is cut there, the loss is reported, and every
//! record before it is kept.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

/// Segments are rotated at this size.
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// No record is larger (a bigger length field means corruption).
const MAX_RECORD: u32 = 64 << 20;
const HEADER: usize = 16;

/// What a record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A transition batch: never dropped, synced on write.
    Transitions,
    /// A statistics batch: bounded, dropped oldest first.
    Statistics,
}

/// A spooled report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number (shared by both kinds).
    pub seq: u64,
    /// Which lane it is in.
    pub kind: Kind,
    /// The encoded batch.
    pub payload: Vec<u8>,
}

/// Limits.
#[derive(Clone, Copy, Debug)]
pub struct SpoolConfig {
    /// Most bytes of statistics kept.
    pub statistics_max_bytes: u64,
}

/// A corrupt or truncated tail found on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptTail {
    /// The segment file.
    pub file: PathBuf,
    /// Where the bad record started; the file now ends here.
    pub offset: u64,
    /// Bytes cut off.
    pub bytes_dropped: u64,
}

/// Why the spool cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("spool {path}: {source}; check that the spool directory is writable (--spool-dir)")]
pub struct SpoolError {
    path: String,
    source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug)]
struct Segment {
    last_seq: u64,
    records: u64,
    bytes: u64,
    path: PathBuf,
}

#[derive(Debug)]
struct Lane {
    dir: PathBuf,
    kind: Kind,
    segments: VecDeque<Segment>,
    /// The last segment, open for appending.
    tail: Option<File>,
}

impl Lane {
    fn open(dir: PathBuf, kind: Kind, corrupt: &mut Vec<CorruptTail>) -> Result<Self, SpoolError> {
        fs::create_dir_all(&dir).map_err(at(&dir))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent).map_err(at(parent))?;
        }
        let mut paths: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(at(&dir))? {
            let path = entry.map_err(at(&dir))?.path();
            let first = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".seg"))
                .and_then(|seq| seq.parse::<u64>().ok());
            if let Some(first) = first {
                paths.push((first, path));
            }
        }
        paths.sort();
        let mut segments = VecDeque::new();
        for (_, path) in paths {
            let (records, last_seq, valid_bytes, total) = scan(&path)?;
            if valid_bytes < total {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(at(&path))?;
                file.set_len(valid_bytes).map_err(at(&path))?;
                file.sync_all().map_err(at(&path))?;
                corrupt.push(CorruptTail {
                    file: path.clone(),
                    offset: valid_bytes,
                    bytes_dropped: total - valid_bytes,
                });
            }
            if records == 0 {
                fs::remove_file(&path).map_err(at(&path))?;
                sync_dir(&dir).map_err(at(&dir))?;
                continue;
            }
            segments.push_back(Segment {
                last_seq,
                records,
                bytes: valid_bytes,
                path,
            });
        }
        Ok(Self {
            dir,
            kind,
            segments,
            tail: None,
        })
    }

    fn append(&mut self, seq: u64, payload: &[u8]) -> io::Result<u64> {
        let full = self
            .segments
            .back()
            .is_none_or(|segment| segment.bytes >= SEGMENT_BYTES);
        if full {
            if let Some(tail) = self.tail.take() {
                tail.sync_data()?;
            }
            let path = self.dir.join(format!("{seq:020}.seg"));
            self.segments.push_back(Segment {
                last_seq: seq,
                records: 0,
                bytes: 0,
                path,
            });
        }
        let segment = self
            .segments
            .back_mut()
            .ok_or_else(|| io::Error::other("no segment to append to"))?;
        if self.tail.is_none() {
            self.tail = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&segment.path)?,
            );
            if full {
                sync_dir(&self.dir)?;
            }
        }
        let record = encode(seq, payload);
        let tail = self
            .tail
            .as_mut()
            .ok_or_else(|| io::Error::other("segment not open"))?;
        tail.write_all(&record)?;
        if self.kind == Kind::Transitions {
            tail.sync_data()?;
        }
        segment.last_seq = seq;
        segment.records += 1;
        segment.bytes += record.len() as u64;
        Ok(record.len() as u64)
    }

    /// Removes whole segments whose records are all at or below `seq`.
    fn trim(&mut self, seq: u64) -> io::Result<()> {
        let mut removed = false;
        while self
            .segments
            .front()
            .is_some_and(|segment| segment.last_seq <= seq)
        {
            let segment = self
                .segments
                .pop_front()
                .ok_or_else(|| io::Error::other("no segment"))?;
            if self.segments.is_empty() {
                self.tail = None;
            }
            fs::remove_file(&segment.path)?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Drops the oldest segment; returns its record count.
    fn drop_oldest(&mut self) -> io::Result<u64> {
        let Some(segment) = self.segments.pop_front() else {
            return Ok(0);
        };
        if self.segments.is_empty() {
            self.tail = None;
        }
        fs::remove_file(&segment.path)?;
        sync_dir(&self.dir)?;
        Ok(segment.records)
    }

    fn bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.bytes).sum()
    }

    fn records(&self) -> u64 {
        self.segments.iter().map(|segment| segment.records).sum()
    }

    fn read(&self, above: u64, into: &mut Vec<Record>) -> io::Result<()> {
        for segment in &self.segments {
            let mut bytes = Vec::new();
            File::open(&segment.path)?.read_to_end(&mut bytes)?;
            let mut offset = 0;
            while let Some((seq, payload, next)) = decode(&bytes[offset..]) {
                if seq > above {
                    into.push(Record {
                        seq,
                        kind: self.kind,
                        payload: payload.to_vec(),
                    });
                }
                offset += next;
            }
        }
        Ok(())
    }

    fn max_seq(&self) -> u64 {
        self.segments.back().map_or(0, |segment| segment.last_seq)
    }
}

/// Makes the directory's entries durable: a file created, removed or
/// renamed in `dir` survives a crash only once its directory is synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER + payload.len());
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&hasher.finalize().to_le_bytes());
    record.extend_from_slice(&seq.to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// The first record of `bytes`: (seq, payload, its length); `None` when it
/// is truncated or fails its checksum.
fn decode(bytes: &[u8]) -> Option<(u64, &[u8], usize)> {
    let header = bytes.get(..HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let end = HEADER + len as usize;
    let payload = bytes.get(HEADER..end)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    (hasher.finalize() == crc).then_some((seq, payload, end))
}

/// (records, last seq, bytes of valid records, file size).
fn scan(path: &Path) -> Result<(u64, u64, u64, u64), SpoolError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(at(path))?;
    let (mut records, mut last, mut offset) = (0, 0, 0);
    while let Some((seq, _, next)) = decode(&bytes[offset..]) {
        records += 1;
        last = seq;
        offset += next;
    }
    Ok((records, last, offset as u64, bytes.len() as u64))
}

/// The spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    boot_id: String,
    next_seq: u64,
    acked_seq: u64,
    transitions: Lane,
    statistics: Lane,
    config: SpoolConfig,
    statistics_dropped: u64,
}

impl Spool {
    /// Opens (creating) the spool in `dir`. Reports still waiting keep the
    /// boot id they were numbered under, and numbering goes on after them;
    /// an empty spool starts a new boot id (from `new_boot_id`) at 1.
    pub fn open(
        dir: &Path,
        config: SpoolConfig,
        new_boot_id: impl FnOnce() -> String,
    ) -> Result<(Self, Vec<CorruptTail>), SpoolError> {
        fs::create_dir_all(dir).map_err(at(dir))?;
        if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            sync_dir(parent).map_err(at(parent))?;
        }
        let mut corrupt = Vec::new();
        let transitions = Lane::open(dir.join("transitions"), Kind::Transitions, &mut corrupt)?;
        let statistics = Lane::open(dir.join("statistics"), Kind::Statistics, &mut corrupt)?;
        let boot_path = dir.join("boot");
        let stored_boot = fs::read_to_string(&boot_path)
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|boot| !boot.is_empty());
        let waiting = transitions.records() + statistics.records() > 0;
        let boot_id = match stored_boot {
            Some(boot) if waiting => boot,
            _ => {
                let boot = new_boot_id();
                let partial = dir.join("boot.partial");
                File::create(&partial)
                    .and_then(|mut file| {
                        file.write_all(boot.as_bytes())?;
                        file.sync_all()
                    })
                    .map_err(at(&partial))?;
                fs::rename(&partial, &boot_path).map_err(at(&boot_path))?;
                sync_dir(dir).map_err(at(dir))?;
                boot
            }
        };
        let next_seq = transitions.max_seq().max(statistics.max_seq()) + 1;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                boot_id,
                next_seq,
                acked_seq: 0,
                transitions,
                statistics,
                config,
                statistics_dropped: 0,
            },
            corrupt,
        ))
    }

    /// The boot id every spooled report is numbered under.
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Spools a report under the next sequence number, built by `encode`
    /// from it. Statistics beyond the bound push the oldest ones out.
    pub fn append(&mut self, kind: Kind, encode: impl FnOnce(u64) -> Vec<u8>) -> io::Result<u64> {
        let seq = self.next_seq;
        let payload = encode(seq);
        match kind {
            Kind::Transitions => self.transitions.append(seq, &payload)?,
            Kind::Statistics => {
                let written = self.statistics.append(seq, &payload)?;
                while self.statistics.bytes() > self.config.statistics_max_bytes
                    && self.statistics.segments.len() > 1
                {
                    self.statistics_dropped += self.statistics.drop_oldest()?;
                }
                written
            }
        };
        self.next_seq += 1;
        Ok(seq)
    }

    /// The controller has everything up to and including `seq`.
    pub fn ack(&mut self, seq: u64) -> io::Result<()> {
        self.acked_seq = self.acked_seq.max(seq);
        self.transitions.trim(self.acked_seq)?;
        self.statistics.trim(self.acked_seq)
    }

    /// Every record not acknowledged yet, in sequence order.
    pub fn unacked(&self) -> io::Result<Vec<Record>> {
        let mut records = Vec::new();
        self.transitions.read(self.acked_seq, &mut records)?;
        self.statistics.read(self.acked_seq, &mut records)?;
        records.sort_by_key(|record| record.seq);
        Ok(records)
    }

    /// Records on disk (acknowledged ones in a partly acknowledged segment
    /// included).
    pub fn records(&self) -> u64 {
        self.transitions.records() + self.statistics.records()
    }

    /// Statistics records dropped because the lane was full.
    pub fn statistics_dropped(&self) -> u64 {
        self.statistics_dropped
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests;
