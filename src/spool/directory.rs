//! The spool directory: the one type that knows its file names, holds its lock, lists, creates,
//! removes and keeps aside its files, and syncs the directory after every change of its names.
//!
//! Names are exact: `segment-{seq:016}.log` and its marks (`.acked`, `.sent`). A file whose name
//! is not in that canonical form is never read as a segment — a copy named `segment-0.log` beside
//! `segment-0000000000000000.log` would otherwise be read twice — and is logged once.

use super::error::OpenError;
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Which of a segment's mark files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marks {
    /// Offsets of records that reached Kafka: not forwarded again after a restart.
    Acked,
    /// Offsets of records the forwarder started writing: after a restart, those not also acked
    /// may already be in Kafka (counted as possible duplicates when forwarded again).
    Sent,
}

impl Marks {
    fn suffix(self) -> &'static str {
        match self {
            Marks::Acked => "acked",
            Marks::Sent => "sent",
        }
    }
}

/// Segments whose marks could not be persisted (a full disk): every record of theirs counts as
/// a possible duplicate after a restart. A fixed-size file, allocated when the directory is
/// opened, so that writing it never needs a new block.
const DOUBT_FILE: &str = "doubt";
/// Slots of [`DOUBT_FILE`]: one segment number each, `u64::MAX` for a free slot.
const DOUBT_SLOTS: usize = 512;

/// The identity of a file: a path that names another file (or none) is not ours any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    pub(super) fn of(file: &File) -> std::io::Result<Identity> {
        let meta = file.metadata()?;
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    fn at(path: &Path) -> std::io::Result<Identity> {
        let meta = std::fs::metadata(path)?;
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

pub(super) struct Directory {
    path: PathBuf,
    /// The lock file, held (`flock`) for the process's life: one process per directory. Taken
    /// again when the directory was removed and made anew under the running process.
    lock: Mutex<(File, Identity)>,
    /// The doubt file (see [`DOUBT_FILE`]), when it could be allocated.
    doubt: Mutex<Option<(File, BTreeSet<u64>)>>,
    /// Names already logged as not canonical, so each is logged once.
    strangers: Mutex<HashSet<String>>,
}

/// Takes `dir`'s lock.
fn lock(dir: &Path) -> Result<(File, Identity), OpenError> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| OpenError::Io {
            dir: dir.to_path_buf(),
            what: "cannot open its lock file",
            source,
        })?;
    match file.try_lock() {
        Ok(()) => {
            let identity = Identity::of(&file).map_err(|source| OpenError::Io {
                dir: dir.to_path_buf(),
                what: "cannot read its lock file",
                source,
            })?;
            Ok((file, identity))
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::InUse(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(OpenError::Io {
            dir: dir.to_path_buf(),
            what: "cannot lock it",
            source,
        }),
    }
}

/// `segment-{seq:016}.log` → its number; anything else → `None`: the name must be exactly the
/// one [`segment_path`] gives that number.
fn canonical_segment(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".log")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq: u64 = digits.parse().ok()?;
    (format!("{seq:016}") == digits).then_some(seq)
}

/// The segment numbers in `dir`, in order, and the names that look like segments or marks but
/// are not canonical.
pub(super) fn list(dir: &Path) -> std::io::Result<(Vec<u64>, Vec<String>)> {
    let mut seqs = Vec::new();
    let mut strangers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = canonical_segment(&name) {
            seqs.push(seq);
            continue;
        }
        let marks = ["acked", "sent"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .and_then(|n| n.strip_suffix('.'))
                .is_some_and(|stem| canonical_segment(&format!("{stem}.log")).is_some())
        });
        if name.starts_with("segment-") && !marks {
            strangers.push(name.into_owned());
        }
    }
    seqs.sort_unstable();
    Ok((seqs, strangers))
}

pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:016}.log"))
}

fn marks_path(dir: &Path, seq: u64, marks: Marks) -> PathBuf {
    dir.join(format!("segment-{seq:016}.{}", marks.suffix()))
}

/// The offsets in a segment's mark file (none when it does not exist).
pub(super) fn read_marks(dir: &Path, seq: u64, marks: Marks) -> std::io::Result<HashSet<u64>> {
    let bytes = match std::fs::read(marks_path(dir, seq, marks)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            u64::from_le_bytes(word)
        })
        .collect())
}

/// The segments listed in `dir`'s doubt file.
pub(super) fn read_doubt(dir: &Path) -> BTreeSet<u64> {
    let bytes = std::fs::read(dir.join(DOUBT_FILE)).unwrap_or_default();
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            u64::from_le_bytes(word)
        })
        .filter(|&seq| seq != u64::MAX)
        .collect()
}

impl Directory {
    /// Creates `path` if needed, and takes its lock.
    pub(super) fn open(path: &Path) -> Result<Directory, OpenError> {
        std::fs::create_dir_all(path).map_err(|source| OpenError::Io {
            dir: path.to_path_buf(),
            what: "cannot create it",
            source,
        })?;
        let lock = lock(path)?;
        let doubted = read_doubt(path);
        let doubt = match allocate_doubt(path, &doubted) {
            Ok(file) => Some((file, doubted)),
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "spool: cannot allocate its doubt file; should the disk fill up, forwarded records may be written again after a restart without being counted");
                None
            }
        };
        Ok(Directory {
            path: path.to_path_buf(),
            lock: Mutex::new(lock),
            doubt: Mutex::new(doubt),
            strangers: Mutex::new(HashSet::new()),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn segment_path(&self, seq: u64) -> PathBuf {
        segment_path(&self.path, seq)
    }

    /// The segment numbers, in order; names not in canonical form are logged, once each.
    pub(super) fn segments(&self) -> std::io::Result<Vec<u64>> {
        let (seqs, strangers) = list(&self.path)?;
        let mut logged = self.strangers.lock();
        for name in strangers {
            if logged.insert(name.clone()) {
                tracing::warn!(dir = %self.path.display(), file = %name, "spool: ignoring a file whose name is not a segment's canonical name (segment-<16 digits or more>.log)");
            }
        }
        Ok(seqs)
    }

    /// Whether `path` still names `file`, the one we hold (it was not removed or replaced).
    pub(super) fn still_names(&self, seq: u64, identity: Identity) -> bool {
        Identity::at(&self.segment_path(seq)).is_ok_and(|at| at == identity)
    }

    /// Creates segment `seq` for appending (and reading back), and makes its name durable. The
    /// directory must exist: it is never created here, so a directory removed under a running
    /// process (or an unmounted volume) is not silently replaced by an empty one on another
    /// disk. A directory made anew by an operator is locked again.
    pub(super) fn create_segment(&self, seq: u64) -> std::io::Result<File> {
        self.relock_if_new()?;
        // Marks left by a segment of this number that is gone (a directory removed and made
        // again) must not apply to the new one.
        for marks in [Marks::Sent, Marks::Acked] {
            match std::fs::remove_file(marks_path(&self.path, seq, marks)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(self.segment_path(seq))?;
        self.sync()?;
        Ok(file)
    }

    /// Opens an existing segment for reading.
    pub(super) fn open_segment(&self, seq: u64) -> std::io::Result<File> {
        File::open(self.segment_path(seq))
    }

    /// Takes the lock again when the lock file is not the one held (the directory was removed
    /// and created anew).
    fn relock_if_new(&self) -> std::io::Result<()> {
        let mut held = self.lock.lock();
        if Identity::at(&self.path.join("lock")).is_ok_and(|at| at == held.1) {
            return Ok(());
        }
        match lock(&self.path) {
            Ok(fresh) => {
                tracing::warn!(dir = %self.path.display(), "spool: the directory was made anew; locked it again");
                *held = fresh;
                // The doubt file went with the old directory: allocate it again (while there is
                // room), so that marks a full disk refuses from now on are still accounted for.
                let mut doubt = self.doubt.lock();
                let doubted = doubt.take().map(|(_, doubted)| doubted).unwrap_or_default();
                match allocate_doubt(&self.path, &doubted) {
                    Ok(file) => *doubt = Some((file, doubted)),
                    Err(e) => {
                        tracing::warn!(dir = %self.path.display(), error = %e, "spool: cannot allocate its doubt file; should the disk fill up, forwarded records may be written again after a restart without being counted");
                    }
                }
                Ok(())
            }
            Err(OpenError::Io { source, .. }) => Err(source),
            Err(other) => Err(std::io::Error::other(other.to_string())),
        }
    }

    /// Appends `offsets` to a segment's mark file and syncs it (and, when it is new, the
    /// directory).
    pub(super) fn append_marks(
        &self,
        seq: u64,
        marks: Marks,
        offsets: &[u64],
    ) -> std::io::Result<()> {
        let path = marks_path(&self.path, seq, marks);
        let existed = path.exists();
        let mut bytes = Vec::with_capacity(offsets.len() * 8);
        for offset in offsets {
            bytes.extend_from_slice(&offset.to_le_bytes());
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        if !existed {
            self.sync()?;
        }
        Ok(())
    }

    /// Removes a segment and its marks, then syncs the directory. The segment goes first: a
    /// crash in between leaves marks without a segment (ignored), never a segment without its
    /// marks (which would be forwarded again).
    pub(super) fn remove_segment(&self, seq: u64) -> std::io::Result<()> {
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        gone(std::fs::remove_file(self.segment_path(seq)))?;
        gone(std::fs::remove_file(marks_path(
            &self.path,
            seq,
            Marks::Sent,
        )))?;
        gone(std::fs::remove_file(marks_path(
            &self.path,
            seq,
            Marks::Acked,
        )))?;
        self.forget_doubt(seq);
        self.sync()
    }

    /// Cuts a segment back to `len` bytes (a torn tail).
    pub(super) fn truncate(&self, seq: u64, len: u64) -> std::io::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.segment_path(seq))
            .and_then(|f| f.set_len(len))
    }

    /// Copies damaged bytes to `corrupt/` for inspection (best effort: a failure is logged).
    pub(super) fn keep_aside(&self, seq: u64, offset: u64, bytes: &[u8]) {
        let corrupt = self.path.join("corrupt");
        let kept = std::fs::create_dir_all(&corrupt).and_then(|()| {
            std::fs::write(
                corrupt.join(format!("segment-{seq:016}-at-{offset}.bin")),
                bytes,
            )
        });
        if let Err(e) = kept {
            tracing::warn!(dir = %self.path.display(), error = %e, "spool: cannot keep damaged bytes aside under corrupt/");
        }
    }

    /// Writes `len` bytes to a scratch file, syncs and removes it: whether an append of that
    /// size would succeed now (the directory exists, is writable and has room).
    pub(super) fn probe(&self, len: usize) -> std::io::Result<()> {
        self.relock_if_new()?;
        let path = self.path.join("probe");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(&vec![0u8; len])?;
                f.sync_data()
            });
        let _ = std::fs::remove_file(&path);
        written
    }

    /// Records that `seq`'s marks could not all be persisted: its records count as possible
    /// duplicates after a restart. Written into the doubt file's allocated space.
    pub(super) fn doubt(&self, seq: u64) {
        let mut doubt = self.doubt.lock();
        let Some((file, doubted)) = doubt.as_mut() else {
            return;
        };
        if doubted.len() >= DOUBT_SLOTS || !doubted.insert(seq) {
            return;
        }
        if let Err(e) = write_doubt(file, doubted) {
            tracing::warn!(dir = %self.path.display(), error = %e, "spool: cannot write its doubt file");
        }
    }

    fn forget_doubt(&self, seq: u64) {
        let mut doubt = self.doubt.lock();
        if let Some((file, doubted)) = doubt.as_mut() {
            if doubted.remove(&seq) {
                let _ = write_doubt(file, doubted);
            }
        }
    }

    /// Syncs the directory itself, so that names created or removed survive a crash.
    pub(super) fn sync(&self) -> std::io::Result<()> {
        File::open(&self.path)?.sync_all()
    }
}

fn allocate_doubt(dir: &Path, doubted: &BTreeSet<u64>) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(DOUBT_FILE))?;
    write_doubt(&file, doubted)?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// Rewrites the doubt file in place (always the same [`DOUBT_SLOTS`] × 8 bytes).
fn write_doubt(file: &File, doubted: &BTreeSet<u64>) -> std::io::Result<()> {
    let mut bytes = vec![0xFFu8; DOUBT_SLOTS * 8];
    for (slot, seq) in doubted.iter().take(DOUBT_SLOTS).enumerate() {
        bytes[slot * 8..slot * 8 + 8].copy_from_slice(&seq.to_le_bytes());
    }
    file.write_all_at(&bytes, 0)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_names_are_segments() {
        assert_eq!(canonical_segment("segment-0000000000000007.log"), Some(7));
        assert_eq!(canonical_segment("segment-0.log"), None);
        assert_eq!(canonical_segment("segment-+000000000000007.log"), None);
        assert_eq!(canonical_segment("segment-00000000000000007.log"), None);
        assert_eq!(canonical_segment("segment-0000000000000007.log.bak"), None);
        assert_eq!(
            canonical_segment("segment-18446744073709551615.log"),
            Some(u64::MAX)
        );
    }
}
