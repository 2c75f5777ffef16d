//! The audit writer: one thread owns the log files. Events arrive on a bounded channel
//! (a full channel makes the sender wait: audit records are never dropped), are chained
//! and appended as JSON lines, flushed per batch and fsynced by policy; every
//! `checkpoint_every` records a signed checkpoint is appended; after each fsync the
//! signed `HEAD` is replaced atomically. Segments rotate at `max_segment_bytes` with
//! the chain running on; after each rotation, at start and hourly, retention removes
//! the oldest segments it no longer keeps (`retention.rs`) and records that it did. On
//! start the chain continues from the last segment (a torn last line from a crash is cut
//! off and logged).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};

use super::error::AuditError;
use super::layout::{Head, segments};
use super::record::{AuditEvent, AuditRecord, GENESIS};
use super::retention::{self, Retention};
use super::signing::Signer;

/// When records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch of records (each admin action, each burst of requests).
    Always,
    /// At most this long after a record was written.
    Interval(Duration),
    /// Left to the kernel.
    Never,
}

/// Audit settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub max_segment_bytes: u64,
    pub checkpoint_every: u64,
    pub retention: Retention,
}

enum Msg {
    Event(AuditEvent),
    Stop(std::sync::mpsc::Sender<()>),
}

/// The handle the daemon records through.
#[derive(Debug)]
pub struct AuditLog {
    tx: SyncSender<MsgBox>,
    public_key: String,
    dir: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Requests without a valid key, counted until the writer records the count.
    unauthenticated: Arc<AtomicU64>,
}

/// `Msg` is not `Debug`; the channel carries it boxed in this wrapper.
struct MsgBox(Msg);

impl std::fmt::Debug for MsgBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Writer {
    settings: AuditSettings,
    signer: Signer,
    file: BufWriter<File>,
    segment: PathBuf,
    segment_no: u64,
    size: u64,
    seq: u64,
    prev: String,
    since_checkpoint: u64,
    dirty_since: Option<Instant>,
    /// Retention is running and appending its records (no rotation meanwhile).
    retaining: bool,
    /// Requests without a valid key since the last `unauthenticated` record.
    unauthenticated: Arc<AtomicU64>,
    next_summary: Instant,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("audit-{n:06}.log"))
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

impl Writer {
    fn open(
        settings: AuditSettings,
        unauthenticated: Arc<AtomicU64>,
    ) -> Result<Writer, AuditError> {
        let dir = settings.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let signer = Signer::load_or_create(&dir)?;
        let existing = segments(&dir).map_err(|e| AuditError::Corrupt(e.to_string()))?;
        let (segment_no, seq, prev) = match existing.last() {
            None => (1, 0, GENESIS.to_string()),
            Some(last) => {
                let n = last
                    .file_name()
                    .and_then(|s| s.to_str())
                    .and_then(|s| {
                        s.trim_start_matches("audit-")
                            .trim_end_matches(".log")
                            .parse()
                            .ok()
                    })
                    .unwrap_or(existing.len() as u64);
                let mut text = std::fs::read_to_string(last).map_err(io_err(last))?;
                if !text.is_empty() && !text.ends_with('\n') {
                    let keep = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
                    tracing::warn!(file = %last.display(), bytes = text.len() - keep, "audit: cutting off a torn last line left by a crash");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(last)
                        .map_err(io_err(last))?;
                    f.set_len(keep as u64).map_err(io_err(last))?;
                    f.sync_all().map_err(io_err(last))?;
                    text.truncate(keep);
                }
                match text.lines().last() {
                    Some(line) => {
                        let r: AuditRecord = serde_json::from_str(line)
                            .map_err(|_| AuditError::Corrupt(last.display().to_string()))?;
                        (n, r.seq, r.hash)
                    }
                    None => (n, 0, GENESIS.to_string()),
                }
            }
        };
        // An empty last segment after records in earlier ones: continue from those.
        let (seq, prev) = if seq == 0 && existing.len() > 1 {
            let before = &existing[existing.len() - 2];
            let text = std::fs::read_to_string(before).map_err(io_err(before))?;
            let r: AuditRecord = text
                .lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok())
                .ok_or_else(|| AuditError::Corrupt(before.display().to_string()))?;
            (r.seq, r.hash)
        } else {
            (seq, prev)
        };
        let segment = segment_path(&dir, segment_no);
        let file = open_append(&segment)?;
        let size = file.metadata().map_err(io_err(&segment))?.len();
        Ok(Writer {
            settings,
            signer,
            file: BufWriter::new(file),
            segment,
            segment_no,
            size,
            seq,
            prev,
            since_checkpoint: 0,
            dirty_since: None,
            retaining: false,
            unauthenticated,
            next_summary: Instant::now() + SUMMARY_EVERY,
        })
    }

    /// Appends an `unauthenticated` record with the requests counted since the last one,
    /// if any, once [`SUMMARY_EVERY`] has passed (or now, with `now`).
    fn summarize(&mut self, now: bool) -> Result<(), AuditError> {
        if !now && Instant::now() < self.next_summary {
            return Ok(());
        }
        self.next_summary = Instant::now() + SUMMARY_EVERY;
        let requests = self.unauthenticated.swap(0, Ordering::AcqRel);
        if requests == 0 {
            return Ok(());
        }
        self.append(AuditEvent::Unauthenticated { requests })
    }

    fn append(&mut self, event: AuditEvent) -> Result<(), AuditError> {
        // A checkpoint never rotates here: `checkpoint` rotated before signing; nor do
        // retention's records (carried ones, `pruned`): it runs inside a rotation.
        if self.size >= self.settings.max_segment_bytes
            && !self.retaining
            && !matches!(event, AuditEvent::Checkpoint { .. })
        {
            self.rotate()?;
        }
        self.seq += 1;
        let (hash, line) = AuditRecord::chained_line(self.seq, now_ms(), &self.prev, &event);
        self.file.write_all(&line).map_err(io_err(&self.segment))?;
        self.size += line.len() as u64;
        self.prev = hash;
        self.since_checkpoint += 1;
        self.dirty_since.get_or_insert_with(Instant::now);
        if self.since_checkpoint >= self.settings.checkpoint_every
            && !matches!(event, AuditEvent::Checkpoint { .. })
        {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), AuditError> {
        // Rotate first: a `rotated` record between the chain's end and the checkpoint
        // that signs it would leave the checkpoint not covering the record before it.
        // Not while retention runs: it runs inside a rotation.
        if self.size >= self.settings.max_segment_bytes && !self.retaining {
            self.rotate()?;
        }
        let signature = self.signer.sign(self.seq, &self.prev);
        let event = AuditEvent::Checkpoint {
            upto_seq: self.seq,
            upto_hash: self.prev.clone(),
            signature,
        };
        self.since_checkpoint = 0;
        self.append(event)?;
        self.since_checkpoint = 0;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        self.sync()?;
        let previous = self
            .segment
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.segment_no += 1;
        self.segment = segment_path(&self.settings.dir, self.segment_no);
        self.file = BufWriter::new(open_append(&self.segment)?);
        self.size = 0;
        self.append(AuditEvent::Rotated {
            previous_segment: previous,
        })?;
        // A retention failure must not cost the record that caused the rotation: the
        // segments stay, and the next rotation (or the hourly check) tries again.
        if let Err(e) = self.prune() {
            tracing::error!(error = %e, "audit retention failed; the oldest segments stay for now");
        }
        Ok(())
    }

    /// Applies retention; what it removed becomes a record of its own. Nothing it
    /// appends rotates (it runs inside a rotation, and must not start another).
    fn prune(&mut self) -> Result<(), AuditError> {
        self.retaining = true;
        let result = self.prune_now();
        self.retaining = false;
        result
    }

    fn prune_now(&mut self) -> Result<(), AuditError> {
        if self.settings.retention.is_off() {
            return Ok(());
        }
        // The segment being written must show its first record to anchor on.
        self.file.flush().map_err(io_err(&self.segment))?;
        let Some(plan) = retention::plan(
            &self.settings.dir,
            &self.segment,
            self.settings.retention,
            SystemTime::now(),
        )?
        else {
            return Ok(());
        };
        // Admin and lifecycle records outlive their segment: carried into this one, and
        // durable, before the segment goes.
        let lasting = retention::lasting(&plan)?;
        lasting.into_iter().try_for_each(|r| {
            let event = match r.event {
                carried @ AuditEvent::Carried { .. } => carried,
                event => AuditEvent::Carried {
                    seq: r.seq,
                    at_ms: r.at_ms,
                    hash: r.hash,
                    event: Box::new(event),
                },
            };
            self.append(event)
        })?;
        self.sync()?;
        let pruned = Some(retention::apply(&self.settings.dir, plan, &self.signer)?);
        if let Some(p) = pruned {
            tracing::warn!(
                segments = p.segments,
                bytes = p.bytes,
                before_seq = p.before_seq,
                reason = p.reason,
                "audit retention removed the oldest segments"
            );
            self.append(AuditEvent::Pruned {
                segments: p.segments,
                bytes: p.bytes,
                before_seq: p.before_seq,
                reason: p.reason.into(),
            })?;
        }
        Ok(())
    }

    /// Flushes, fsyncs, and replaces HEAD (write, fsync, rename).
    fn sync(&mut self) -> Result<(), AuditError> {
        self.file.flush().map_err(io_err(&self.segment))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(io_err(&self.segment))?;
        self.dirty_since = None;
        let head = Head {
            seq: self.seq,
            hash: self.prev.clone(),
            signature: self.signer.sign(self.seq, &self.prev),
        };
        let tmp = self.settings.dir.join("HEAD.tmp");
        let path = self.settings.dir.join("HEAD");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(serde_json::to_string(&head).unwrap_or_default().as_bytes())
            .map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(())
    }

    /// After a batch: flush to the kernel, and fsync as the policy says.
    fn after_batch(&mut self) -> Result<(), AuditError> {
        self.file.flush().map_err(io_err(&self.segment))?;
        match self.settings.fsync {
            FsyncPolicy::Always => self.sync(),
            FsyncPolicy::Interval(d) if self.dirty_since.is_some_and(|t| t.elapsed() >= d) => {
                self.sync()
            }
            _ => Ok(()),
        }
    }
}

fn run(mut w: Writer, rx: Receiver<MsgBox>) {
    // At most one line a minute: a full disk must not turn every request into a log line.
    let mut last_report: Option<Instant> = None;
    let mut report = |e: AuditError| {
        if last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            last_report = Some(Instant::now());
            tracing::error!(error = %e, "audit log write failed (further failures within a minute are not logged)");
        }
    };
    // Retention at start (a limit lowered in the config takes effect now) and then
    // hourly, so that age applies on a quiet appliance too.
    let mut next_retention = Instant::now();
    loop {
        if let Err(e) = w.summarize(false) {
            report(e);
        }
        if Instant::now() >= next_retention {
            next_retention = Instant::now() + RETENTION_EVERY;
            if let Err(e) = w.prune().and_then(|()| w.after_batch()) {
                report(e);
            }
        }
        // Wait for the next record; when written records are not yet durable, only as
        // long as the fsync policy allows.
        let wait = match (w.settings.fsync, w.dirty_since) {
            (FsyncPolicy::Interval(d), Some(t)) => Some(d.saturating_sub(t.elapsed())),
            (FsyncPolicy::Always, Some(_)) => Some(Duration::ZERO),
            _ => None,
        };
        let until_retention = (!w.settings.retention.is_off())
            .then(|| next_retention.saturating_duration_since(Instant::now()));
        let wait = match (wait, until_retention) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Wake for the next count of unauthenticated requests too.
        let until_summary = w.next_summary.saturating_duration_since(Instant::now());
        let wait = Some(wait.map_or(until_summary, |d| d.min(until_summary)));
        let next = match wait {
            Some(d) => rx.recv_timeout(d),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut message = match next {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if w.dirty_since.is_some() {
                    if let Err(e) = w.sync() {
                        report(e);
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                if let Err(e) = w.sync() {
                    report(e);
                }
                return;
            }
        };
        loop {
            match message.0 {
                Msg::Event(event) => {
                    if let Err(e) = w.append(event) {
                        report(e);
                    }
                }
                Msg::Stop(done) => {
                    let result = w
                        .summarize(true)
                        .and_then(|()| w.checkpoint())
                        .and_then(|()| w.sync());
                    if let Err(e) = result {
                        report(e);
                    }
                    let _ = done.send(());
                    return;
                }
            }
            match rx.try_recv() {
                Ok(m) => message = m,
                Err(_) => break,
            }
        }
        if let Err(e) = w.after_batch() {
            report(e);
        }
        // Under traffic, let records gather for a moment instead of being woken for
        // each one: senders only wake a writer that is blocked on the channel.
        std::thread::sleep(GATHER);
    }
}

/// How long the writer lets records gather after a batch.
const GATHER: Duration = Duration::from_millis(2);

/// How often requests without a valid key are summed into an `unauthenticated` record.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// How often retention looks at the segments besides after each rotation.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

impl AuditLog {
    /// Opens (or continues) the log in `settings.dir` and starts the writer thread.
    pub fn open(settings: AuditSettings) -> Result<AuditLog, AuditError> {
        let dir = settings.dir.clone();
        let unauthenticated = Arc::new(AtomicU64::new(0));
        let writer = Writer::open(settings, Arc::clone(&unauthenticated))?;
        let public_key = writer.signer.public_key_hex();
        let (tx, rx) = sync_channel(65_536);
        let thread = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || run(writer, rx))
            .map_err(|source| AuditError::Io {
                path: "audit writer thread".into(),
                source,
            })?;
        Ok(AuditLog {
            tx,
            public_key,
            dir,
            thread: Mutex::new(Some(thread)),
            unauthenticated,
        })
    }

    /// The hex ed25519 public key that verifies this appliance's checkpoints.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The directory of the segment files (read directly by readers such as the
    /// admin API's checkpoint listing; only the writer thread writes them).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records an event; when the writer is behind, waits off the async workers, so
    /// that no record is dropped.
    pub async fn record(&self, event: AuditEvent) {
        match self.tx.try_send(MsgBox(Msg::Event(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                let tx = self.tx.clone();
                let sent = tokio::task::spawn_blocking(move || tx.send(m).is_ok()).await;
                if !matches!(sent, Ok(true)) {
                    tracing::error!("audit writer is gone; record lost");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("audit writer is gone; record lost");
            }
        }
    }

    /// Counts a request that carried no valid key (a 401, `/healthz`, an unknown route):
    /// such requests are summed into one `unauthenticated` record a minute, not
    /// recorded one by one.
    pub fn count_unauthenticated(&self) {
        self.unauthenticated.fetch_add(1, Ordering::Relaxed);
    }

    /// Records from a blocking context.
    pub fn record_blocking(&self, event: AuditEvent) {
        if self.tx.send(MsgBox(Msg::Event(event))).is_err() {
            tracing::error!("audit writer is gone; record lost");
        }
    }

    /// Writes a final checkpoint, makes everything durable and stops the writer.
    pub fn close(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(MsgBox(Msg::Stop(done))).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}
