//! The bounded on-disk spool: gzip bodies that VictoriaMetrics did not take
//! yet, one file each, replayed oldest first. File names carry their order
//! and row count (`{seq:020}-{rows}.jsonl.gz`) so nothing needs reading to
//! account for them; a file is written under a temporary name and renamed,
//! so a crash never leaves half a body behind under a spool name.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tracing::warn;

const SUFFIX: &str = ".jsonl.gz";
const TEMPORARY: &str = ".partial";
/// A body VictoriaMetrics refused is kept under this suffix for an
/// operator to look at, and never sent again.
const REJECTED: &str = ".rejected";

/// One spooled body.
#[derive(Debug)]
pub struct SpoolFile {
    seq: u64,
    /// Rows in the body.
    pub rows: u64,
    bytes: u64,
    path: PathBuf,
}

/// The spool as the writer task holds it: its files are read and written
/// on a blocking thread only, never on an async worker.
#[derive(Debug)]
pub struct OffWorker(Option<Spool>);

impl OffWorker {
    /// Holds `spool`.
    pub fn new(spool: Spool) -> Self {
        Self(Some(spool))
    }

    /// The spool's accounting, kept in memory (no file is touched).
    pub fn get(&self) -> &Spool {
        self.0
            .as_ref()
            .expect("the spool is handed back after every blocking operation")
    }

    /// Runs `operation` on the spool on a blocking thread.
    pub async fn run<T: Send + 'static>(
        &mut self,
        operation: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> T {
        let mut spool = self
            .0
            .take()
            .expect("the spool is handed back after every blocking operation");
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = operation(&mut spool);
            (spool, outcome)
        })
        .await;
        match outcome {
            Ok((spool, outcome)) => {
                self.0 = Some(spool);
                outcome
            }
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

/// Spooled bodies, oldest first, at most `max_bytes` in all.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Waiting, oldest first.
    files: VecDeque<SpoolFile>,
    /// Taken to be sent, not yet settled.
    sending: Vec<SpoolFile>,
    /// Of both.
    bytes: u64,
    /// Never reused, not even for rejected bodies.
    next_seq: u64,
}

impl Spool {
    /// Opens (creating) `dir`, taking up the bodies a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        let mut next_seq = 0;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TEMPORARY) {
                // Written by a run that stopped before renaming it: the
                // rows are still in that run's spool under an older body or
                // were never acknowledged to anyone.
                fs::remove_file(entry.path())?;
                continue;
            }
            if let Some((seq, _)) = name.strip_suffix(REJECTED).and_then(parse_name) {
                next_seq = next_seq.max(seq + 1);
                continue;
            }
            match parse_name(&name) {
                Some((seq, rows)) => {
                    next_seq = next_seq.max(seq + 1);
                    files.push(SpoolFile {
                        seq,
                        rows,
                        bytes: entry.metadata()?.len(),
                        path: entry.path(),
                    });
                }
                None => warn!(file = %entry.path().display(), "not a spool file; left alone"),
            }
        }
        files.sort_by_key(|file| file.seq);
        let bytes = files.iter().map(|file| file.bytes).sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            files: files.into(),
            sending: Vec::new(),
            bytes,
            next_seq,
        })
    }

    /// Spools `body` of `rows` rows, first dropping the oldest bodies as far
    /// as needed to stay within the bound. Returns the rows dropped.
    pub fn push(&mut self, body: &[u8], rows: u64) -> io::Result<u64> {
        let size = body.len() as u64;
        if size > self.max_bytes {
            return Ok(rows);
        }
        let mut dropped = 0;
        while self.bytes + size > self.max_bytes {
            let Some(oldest) = self.files.pop_front() else {
                break;
            };
            self.bytes -= oldest.bytes;
            dropped += oldest.rows;
            fs::remove_file(&oldest.path)?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.dir.join(format!("{seq:020}-{rows}{SUFFIX}"));
        let partial = path.with_extension(format!("gz{TEMPORARY}"));
        fs::write(&partial, body)?;
        fs::rename(&partial, &path)?;
        self.files.push_back(SpoolFile {
            seq,
            rows,
            bytes: size,
            path,
        });
        self.bytes += size;
        Ok(dropped)
    }

    /// Takes the oldest waiting body out of the queue to be sent (a full
    /// spool never drops a body being sent): its sequence number, rows
    /// and contents. Settle it with [`Spool::sent`], [`Spool::unsent`] or
    /// [`Spool::reject`].
    pub fn take_oldest(&mut self) -> Option<(u64, u64, io::Result<Vec<u8>>)> {
        let oldest = self.files.pop_front()?;
        let taken = (oldest.seq, oldest.rows, fs::read(&oldest.path));
        self.sending.push(oldest);
        Some(taken)
    }

    /// Body `seq` was written: removed.
    pub fn sent(&mut self, seq: u64) -> io::Result<()> {
        match self.settle(seq) {
            Some(file) => fs::remove_file(&file.path),
            None => Ok(()),
        }
    }

    /// Body `seq` could not be sent now: it waits again in its place.
    pub fn unsent(&mut self, seq: u64) {
        if let Some(file) = self.settle(seq) {
            let at = self.files.partition_point(|waiting| waiting.seq < seq);
            self.bytes += file.bytes;
            self.files.insert(at, file);
        }
    }

    /// Sets body `seq` aside as `*.rejected` (it can never be written);
    /// returns it with its new path.
    pub fn reject(&mut self, seq: u64) -> io::Result<Option<(SpoolFile, PathBuf)>> {
        let Some(file) = self.settle(seq) else {
            return Ok(None);
        };
        let mut rejected = file.path.clone().into_os_string();
        rejected.push(REJECTED);
        let rejected = PathBuf::from(rejected);
        fs::rename(&file.path, &rejected)?;
        Ok(Some((file, rejected)))
    }

    /// Body `seq` leaves the bodies being sent (and the spool's count).
    fn settle(&mut self, seq: u64) -> Option<SpoolFile> {
        let at = self.sending.iter().position(|file| file.seq == seq)?;
        let file = self.sending.swap_remove(at);
        self.bytes -= file.bytes;
        Some(file)
    }

    /// True when nothing waits and nothing is being sent.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.sending.is_empty()
    }

    /// True when a body waits to be sent.
    pub fn has_waiting(&self) -> bool {
        !self.files.is_empty()
    }

    /// Bytes spooled.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Rows spooled (waiting or being sent).
    pub fn rows(&self) -> u64 {
        self.files
            .iter()
            .chain(&self.sending)
            .map(|file| file.rows)
            .sum()
    }
}

/// `{seq}-{rows}.jsonl.gz` → (seq, rows).
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (seq, rows) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    Some((seq.parse().ok()?, rows.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(spool: &mut Spool) -> (u64, Vec<u8>) {
        let (seq, _, body) = spool.take_oldest().unwrap();
        (seq, body.unwrap())
    }

    #[test]
    fn bodies_come_back_oldest_first_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1_000).unwrap();
        assert_eq!(spool.push(b"first", 3).unwrap(), 0);
        assert_eq!(spool.push(b"second", 4).unwrap(), 0);
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1_000).unwrap();
        assert_eq!((spool.rows(), spool.bytes()), (7, 11));
        let (first, body) = take(&mut spool);
        assert_eq!(body, b"first");
        spool.sent(first).unwrap();
        let (second, body) = take(&mut spool);
        assert_eq!(body, b"second");
        spool.push(b"third", 1).unwrap();
        spool.sent(second).unwrap();
        assert_eq!(take(&mut spool).1, b"third");
    }

    #[test]
    fn bodies_being_sent_count_go_back_in_order_and_are_never_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 12).unwrap();
        spool.push(b"aaaa", 1).unwrap();
        spool.push(b"bbbb", 2).unwrap();
        let (a, _) = take(&mut spool);
        let (b, _) = take(&mut spool);
        assert!(!spool.has_waiting());
        assert!(!spool.is_empty(), "bodies being sent are still spooled");
        assert_eq!((spool.rows(), spool.bytes()), (3, 8));
        // Full: only a waiting body could make room, and none waits.
        spool.push(b"cccc", 3).unwrap();
        assert_eq!(spool.push(b"dddd", 4).unwrap(), 3, "the waiting one goes");
        spool.unsent(b);
        spool.unsent(a);
        assert_eq!(take(&mut spool).1, b"aaaa");
        assert_eq!(take(&mut spool).1, b"bbbb");
        assert_eq!(take(&mut spool).1, b"dddd");
        assert!(spool.take_oldest().is_none());
    }

    #[test]
    fn a_full_spool_drops_its_oldest_rows_and_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 10).unwrap();
        assert_eq!(spool.push(b"aaaa", 5).unwrap(), 0);
        assert_eq!(spool.push(b"bbbb", 6).unwrap(), 0);
        assert_eq!(spool.push(b"cccc", 7).unwrap(), 5);
        assert_eq!(spool.rows(), 13);
        assert_eq!(spool.push(b"this body alone is too big", 9).unwrap(), 9);
        assert_eq!(spool.rows(), 13);
    }

    #[test]
    fn rejected_bodies_and_partial_writes_are_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1_000).unwrap();
        spool.push(b"not gzip", 2).unwrap();
        let (seq, _) = take(&mut spool);
        let (file, path) = spool.reject(seq).unwrap().unwrap();
        assert_eq!(file.rows, 2);
        assert!(path.to_string_lossy().ends_with(".jsonl.gz.rejected"));
        fs::write(
            dir.path().join("00000000000000000009-1.jsonl.gz.partial"),
            b"x",
        )
        .unwrap();
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let spool = Spool::open(dir.path(), 1_000).unwrap();
        assert!(spool.is_empty());
        assert!(path.exists());
        assert!(
            !dir.path()
                .join("00000000000000000009-1.jsonl.gz.partial")
                .exists()
        );
    }
}
