//! The one thread that appends to the spool: it takes every append waiting, writes them in one
//! go and syncs once (`fdatasync`) before any of them is answered — group commit, so that a
//! thousand concurrent webhooks cost one sync, not a thousand.

use super::{segment_path, SEGMENT_BYTES};
use crate::metrics::Metrics;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Appends waiting at most; past it an append fails at once (a disk this far behind is failing).
const MAX_WAITING: usize = 65_536;
/// Bytes written in one batch at most.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Where an append landed.
pub(super) struct Written {
    pub segment: u64,
    pub offset: u64,
}

struct Job {
    framed: Vec<u8>,
    reply: oneshot::Sender<Result<Written, String>>,
}

pub(super) struct Writer {
    jobs: SyncSender<Job>,
    /// Start a new segment before the next append (the active one is done with).
    rotate: Arc<AtomicBool>,
}

impl Writer {
    pub(super) fn start(
        dir: &Path,
        first_segment: u64,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Writer> {
        let file = open_segment(dir, first_segment)?;
        let (jobs, queue) = sync_channel(MAX_WAITING);
        let rotate = Arc::new(AtomicBool::new(false));
        let thread = Thread {
            dir: dir.to_path_buf(),
            segment: first_segment,
            size: 0,
            file,
            rotate: rotate.clone(),
            metrics,
        };
        std::thread::Builder::new()
            .name("hookstream-spool".into())
            .spawn(move || thread.run(queue))?;
        Ok(Writer { jobs, rotate })
    }

    pub(super) async fn append(&self, framed: Vec<u8>) -> Result<Written, String> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job { framed, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => "too many appends waiting for the disk".to_string(),
                TrySendError::Disconnected(_) => "the spool writer stopped".to_string(),
            })?;
        answer
            .await
            .map_err(|_| "the spool writer stopped".to_string())?
    }

    pub(super) fn rotate(&self) {
        self.rotate.store(true, Ordering::Relaxed);
    }
}

fn open_segment(dir: &Path, seq: u64) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, seq))?;
    // The new file's name must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

struct Thread {
    dir: PathBuf,
    segment: u64,
    size: u64,
    file: File,
    rotate: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Thread {
    fn run(mut self, queue: Receiver<Job>) {
        let mut batch = Vec::new();
        let mut buf = Vec::new();
        while let Ok(first) = queue.recv() {
            let mut bytes = first.framed.len();
            batch.push(first);
            while bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(job) => {
                        bytes += job.framed.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            let outcome = self.write(&batch, &mut buf);
            for (job, result) in batch.drain(..).zip(outcome) {
                let _ = job.reply.send(result);
            }
        }
    }

    /// Writes the batch and syncs; one result per job.
    fn write(&mut self, batch: &[Job], buf: &mut Vec<u8>) -> Vec<Result<Written, String>> {
        if self.size >= SEGMENT_BYTES
            || (self.rotate.swap(false, Ordering::Relaxed) && self.size > 0)
        {
            match open_segment(&self.dir, self.segment + 1) {
                Ok(file) => {
                    self.segment += 1;
                    self.size = 0;
                    self.file = file;
                }
                Err(e) => {
                    return batch
                        .iter()
                        .map(|_| Err(format!("cannot start a segment: {e}")))
                        .collect()
                }
            }
        }
        buf.clear();
        let mut placed = Vec::with_capacity(batch.len());
        for job in batch {
            placed.push(self.size + buf.len() as u64);
            buf.extend_from_slice(&job.framed);
        }
        let started = Instant::now();
        let written = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        self.metrics
            .spool_sync_duration
            .observe(started.elapsed().as_secs_f64());
        match written {
            Ok(()) => {
                self.size += buf.len() as u64;
                placed
                    .into_iter()
                    .map(|offset| {
                        Ok(Written {
                            segment: self.segment,
                            offset,
                        })
                    })
                    .collect()
            }
            Err(e) => {
                // Nothing of a failed batch counts: cut the file back to where it was.
                let _ = self.file.set_len(self.size);
                let why = e.to_string();
                batch.iter().map(|_| Err(why.clone())).collect()
            }
        }
    }
}
