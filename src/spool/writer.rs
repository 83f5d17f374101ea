//! The one thread that appends to the spool: it takes every append waiting, writes them in one
//! go and syncs once (`fdatasync`) before any of them is answered — group commit, so that a
//! thousand concurrent webhooks cost one sync, not a thousand.
//!
//! The thread also registers what it wrote in the spool's state before it answers, in the order
//! it wrote, so that no other task can see a segment as empty (and delete it) while a record
//! written to it is on its way to being registered.
//!
//! It never writes into a file it cannot find again: before each batch it checks that the
//! active segment's name still names the file it holds. A segment removed (or the whole
//! directory removed) under it makes it start a new one, which fails until the directory exists
//! again; the records already in the lost file stay readable through the descriptor the state
//! holds, and are forwarded while the process lives.

use super::directory::Identity;
use super::state::{Shared, SpoolId, SEGMENT_BYTES};
use crate::internal_events::{InternalEvent, SpoolIoFailed, SpoolSynced};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Appends waiting at most; past it an append fails at once (a disk this far behind is failing).
const MAX_WAITING: usize = 65_536;
/// Bytes written in one batch at most.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What the state needs to know of an appended record.
pub(super) struct Appended {
    pub len: u64,
    pub spooled_at: i64,
    /// A first write is in flight: the forwarder leaves it alone until that write settles.
    pub first_attempt: bool,
}

/// Where an append's answer goes.
type Reply = oneshot::Sender<Result<SpoolId, String>>;

/// An append taken into a batch: its frame, what to register, where to answer.
type Pending = (Vec<u8>, Appended, Reply);

enum Job {
    Append {
        framed: Vec<u8>,
        appended: Appended,
        reply: Reply,
    },
    /// Whether an append of `len` bytes would succeed now (clears "cannot be written").
    Probe {
        len: usize,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

pub(super) struct Appender {
    jobs: Option<SyncSender<Job>>,
    /// Start a new segment before the next append (the active one is done with).
    rotate: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Appender {
    /// Starts the thread, appending from segment `first_segment` on (created now).
    pub(super) fn start(shared: Arc<Shared>, first_segment: u64) -> std::io::Result<Appender> {
        let (jobs, queue) = sync_channel(MAX_WAITING);
        let rotate = Arc::new(AtomicBool::new(false));
        let mut thread = Thread {
            shared,
            active: None,
            next: Some(first_segment),
            rotate: rotate.clone(),
        };
        thread.start_segment()?;
        let thread = std::thread::Builder::new()
            .name("hookstream-spool".into())
            .spawn(move || thread.run(queue))?;
        Ok(Appender {
            jobs: Some(jobs),
            rotate,
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) -> Result<(), String> {
        let Some(jobs) = &self.jobs else {
            return Err("the spool writer stopped".into());
        };
        jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => "too many appends waiting for the disk".to_string(),
            TrySendError::Disconnected(_) => "the spool writer stopped".to_string(),
        })
    }

    /// Appends `framed`; once answered `Ok`, the record is on disk and registered. Dropping
    /// the future before the answer abandons the append: a record written anyway is dropped
    /// again (acked) rather than forwarded behind a 503.
    pub(super) async fn append(
        &self,
        framed: Vec<u8>,
        appended: Appended,
    ) -> Result<SpoolId, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Append {
            framed,
            appended,
            reply,
        })?;
        answer
            .await
            .map_err(|_| "the spool writer stopped".to_string())?
    }

    pub(super) async fn probe(&self, len: usize) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Probe { len, reply })?;
        answer
            .await
            .map_err(|_| "the spool writer stopped".to_string())?
    }

    pub(super) fn rotate(&self) {
        self.rotate.store(true, Ordering::Relaxed);
    }
}

impl Drop for Appender {
    /// Stops the thread and waits for it, so the directory's lock is released on return.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The segment being appended to.
struct Active {
    seq: u64,
    file: Arc<File>,
    identity: Identity,
    size: u64,
}

struct Thread {
    shared: Arc<Shared>,
    /// `None` after a failure that leaves the file's end unknown, or when its name was lost.
    active: Option<Active>,
    /// The next segment's number; `None` once numbers are exhausted.
    next: Option<u64>,
    rotate: Arc<AtomicBool>,
}

impl Thread {
    fn run(mut self, queue: Receiver<Job>) {
        let mut batch = Vec::new();
        let mut buf = Vec::new();
        while let Ok(first) = queue.recv() {
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Probe { len, reply } => {
                        let _ = reply.send(self.probe(len));
                    }
                    Job::Append {
                        framed,
                        appended,
                        reply,
                    } => {
                        if reply.is_closed() {
                            // Abandoned before it was written: never written.
                            self.shared.unreserve(appended.len);
                        } else {
                            bytes += framed.len();
                            batch.push((framed, appended, reply));
                        }
                    }
                }
                if bytes < MAX_BATCH_BYTES {
                    next = queue.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.write(&mut batch, &mut buf);
            }
        }
    }

    /// Starts segment `next`, registering it in the state (and deleting the previous one if it
    /// holds nothing).
    fn start_segment(&mut self) -> std::io::Result<()> {
        let Some(seq) = self.next else {
            return Err(std::io::Error::other("segment numbers are exhausted"));
        };
        let file = Arc::new(self.shared.dir.create_segment(seq)?);
        let identity = Identity::of(&file)?;
        self.next = seq.checked_add(1);
        self.shared.segment_started(seq, file.clone());
        self.active = Some(Active {
            seq,
            file,
            identity,
            size: 0,
        });
        Ok(())
    }

    /// The active segment, after starting a new one when it is full, done with, or lost.
    fn ensure_active(&mut self) -> Result<(), String> {
        let rotate = self.rotate.swap(false, Ordering::Relaxed);
        if let Some(active) = &self.active {
            if !self.shared.dir.still_names(active.seq, active.identity) {
                tracing::error!(
                    file = %self.shared.dir.segment_path(active.seq).display(),
                    "spool: the active segment is gone from the spool directory; its records are still forwarded from the open file, but a restart would lose them"
                );
                self.active = None;
            }
        }
        let fresh = self
            .active
            .as_ref()
            .is_none_or(|a| a.size >= SEGMENT_BYTES || (rotate && a.size > 0));
        if fresh {
            self.start_segment().map_err(|e| {
                format!(
                    "spool.dir {}: cannot start a segment: {e}",
                    self.shared.dir.path().display()
                )
            })?;
        }
        Ok(())
    }

    fn probe(&mut self, len: usize) -> Result<(), String> {
        if !self.shared.failing() {
            return Ok(());
        }
        let probed = self.ensure_active().and_then(|()| {
            self.shared
                .dir
                .probe(len)
                .map_err(|e| format!("spool.dir {}: {e}", self.shared.dir.path().display()))
        });
        match &probed {
            Ok(()) => self.shared.set_failing(None),
            Err(why) => SpoolIoFailed {
                operation: "probe",
                dir: self.shared.dir.path(),
                error: why,
            }
            .emit(&self.shared.metrics),
        }
        probed
    }

    /// Writes the batch and syncs, registers what it wrote, and answers every job.
    fn write(&mut self, batch: &mut Vec<Pending>, buf: &mut Vec<u8>) {
        let written = self.ensure_active().and_then(|()| {
            let active = self.active.as_mut().expect("ensured");
            buf.clear();
            let mut offsets = Vec::with_capacity(batch.len());
            for (framed, _, _) in batch.iter() {
                offsets.push(active.size + buf.len() as u64);
                buf.extend_from_slice(framed);
            }
            let started = Instant::now();
            let result = (&*active.file)
                .write_all(buf)
                .and_then(|()| active.file.sync_data());
            SpoolSynced {
                elapsed: started.elapsed(),
            }
            .emit(&self.shared.metrics);
            match result {
                Ok(()) => {
                    active.size += buf.len() as u64;
                    Ok((active.seq, offsets))
                }
                Err(e) => {
                    // Nothing of a failed batch counts: cut the file back to where it was, or
                    // (if even that fails) leave it and start a new segment next time.
                    if active.file.set_len(active.size).is_err() {
                        self.active = None;
                    }
                    Err(format!(
                        "spool.dir {}: {e}",
                        self.shared.dir.path().display()
                    ))
                }
            }
        });
        match written {
            Ok((seq, offsets)) => {
                let jobs = batch.drain(..).zip(offsets);
                let registered = self.shared.register(seq, jobs);
                // Answered after registering: a reply nobody waits for any more means the
                // request was answered 503 meanwhile, so its record is dropped again.
                let abandoned: Vec<SpoolId> = registered
                    .into_iter()
                    .filter_map(|(id, reply)| reply.send(Ok(id)).err().map(|_| id))
                    .collect();
                if !abandoned.is_empty() {
                    self.shared.drop_abandoned(&abandoned);
                }
            }
            Err(why) => {
                SpoolIoFailed {
                    operation: "append",
                    dir: self.shared.dir.path(),
                    error: &why,
                }
                .emit(&self.shared.metrics);
                self.shared.set_failing(Some(why.clone()));
                for (_, appended, reply) in batch.drain(..) {
                    self.shared.unreserve(appended.len);
                    let _ = reply.send(Err(why.clone()));
                }
            }
        }
    }
}
