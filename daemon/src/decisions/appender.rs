//! The decision store's writer: requests copy sealed frames onto the end of a pending
//! buffer (a memory copy under a lock, no system call; a frame is bounded by the request
//! body limit), and one thread swaps that buffer for its spare and appends it to the
//! current segment in one write, every 2 ms while decisions arrive (it is woken only
//! when it found nothing to write: a wake-up per decision cost more than the rest of
//! recording together), fsyncs at most every second, and begins a new segment when the
//! current one is full or an hour old. A failed write keeps its frames
//! pending and retries on a new segment; meanwhile, and while too much is pending, new
//! decisions are refused (the request is not answered), so no answered decision is
//! dropped while the daemon runs. A failed fsync refuses decisions until a restart (the
//! kernel may have dropped the pages, and a later fsync would not tell). Readers first
//! wait for what is pending to be written.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::segment::{self, MAGIC, SegmentMeta};

/// When segments end and reach the disk.
#[derive(Debug, Clone, Copy)]
pub struct Rolling {
    /// A segment ends once it holds this many bytes.
    pub max_bytes: u64,
    /// ... or once it is this old.
    pub max_age: Duration,
    /// Written frames are fsynced at most this long after they were written.
    pub sync_every: Duration,
}

impl Default for Rolling {
    fn default() -> Rolling {
        Rolling {
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(3600),
            sync_every: Duration::from_secs(1),
        }
    }
}

/// Most bytes pending before new decisions are refused (the disk has fallen behind).
const MAX_PENDING_BYTES: usize = 32 << 20;
/// How long the writer sleeps after a write before it takes what is pending again.
const TICK: Duration = Duration::from_millis(2);
/// The most a pending buffer keeps between writes.
const BUF_KEPT: usize = 1 << 20;
/// How long a failed write waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the decision store cannot write: {0}")]
    Failed(String),
    #[error("the decision store has fallen behind ({0} bytes waiting to be written)")]
    Behind(usize),
    #[error("the decision store is closed")]
    Closed,
}

/// A frame in the pending buffer.
struct Entry {
    at_ms: u64,
    len: usize,
    /// `model@version`, shared by the consecutive frames of one version.
    version_key: Arc<str>,
}

/// Frames waiting to be written: their bytes back to back, and what each is.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push(&mut self, at_ms: u64, model: &str, version: &str, frame: &[u8]) {
        let same = self.entries.last().map(|e| &e.version_key).filter(|k| {
            k.len() == model.len() + 1 + version.len()
                && k.starts_with(model)
                && k[model.len()..].starts_with('@')
                && k.ends_with(version)
        });
        let version_key = match same {
            Some(k) => Arc::clone(k),
            None => Arc::from(segment::version_key(model, version)),
        };
        self.bytes.extend_from_slice(frame);
        self.entries.push(Entry {
            at_ms,
            len: frame.len(),
            version_key,
        });
    }

    /// `later`'s frames after these.
    fn append(&mut self, later: &mut Pending) {
        self.bytes.append(&mut later.bytes);
        self.entries.append(&mut later.entries);
    }

    /// Empties it, giving back a burst's memory.
    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        if self.bytes.capacity() > BUF_KEPT {
            *self = Pending::default();
        }
    }
}

struct State {
    pending: Pending,
    pending_bytes: usize,
    /// Entries accepted, and entries written to the current segment's file.
    appended: u64,
    written: u64,
    failed: Option<String>,
    /// A failure no retry can mend (an fsync failed): `failed` stays until a restart.
    fatal: bool,
    writer_waiting: bool,
    stop: bool,
    /// The segment being written, never forgotten by retention.
    current_seq: Option<u64>,
    /// Every segment, oldest first; the last may be the one being written.
    segments: Vec<SegmentMeta>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes those waiting for a write.
    written: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Appender {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decision appender")
    }
}

/// Keeps a finished segment's summary; an error is the writer's error.
pub type OnSealed = Box<dyn Fn(&SegmentMeta) -> Result<(), String> + Send>;

/// Where and how the writer thread writes; `on_sealed` keeps the summary of each
/// segment it finishes.
pub struct Target {
    pub dir: PathBuf,
    pub rolling: Rolling,
    pub next_seq: u64,
    pub on_sealed: OnSealed,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("dir", &self.dir)
            .field("rolling", &self.rolling)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl Appender {
    /// Starts the writer after the `segments` already on disk.
    pub fn start(segments: Vec<SegmentMeta>, target: Target) -> Result<Appender, std::io::Error> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Pending::default(),
                pending_bytes: 0,
                appended: 0,
                written: 0,
                failed: None,
                fatal: false,
                writer_waiting: false,
                stop: false,
                current_seq: None,
                segments,
            }),
            work: Condvar::new(),
            written: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("decisions".into())
                .spawn(move || {
                    let watched = Arc::clone(&shared);
                    let run = std::panic::AssertUnwindSafe(|| Writer::new(shared, target).run());
                    if std::panic::catch_unwind(run).is_err() {
                        // Nothing more will be written: refuse what comes, release waiters.
                        let mut s = watched.lock();
                        s.failed = Some("the decision writer stopped unexpectedly".into());
                        s.stop = true;
                        watched.written.notify_all();
                    }
                })?
        };
        Ok(Appender {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a copy of a sealed frame of `model@version`; an error means it will not
    /// be written.
    pub fn append(
        &self,
        at_ms: u64,
        model: &str,
        version: &str,
        frame: &[u8],
    ) -> Result<(), AppendError> {
        let mut s = self.shared.lock();
        if s.stop {
            return Err(AppendError::Closed);
        }
        if let Some(e) = &s.failed {
            return Err(AppendError::Failed(e.clone()));
        }
        if s.pending_bytes > MAX_PENDING_BYTES {
            return Err(AppendError::Behind(s.pending_bytes));
        }
        s.pending_bytes += frame.len();
        s.pending.push(at_ms, model, version, frame);
        s.appended += 1;
        if s.writer_waiting {
            s.writer_waiting = false;
            self.shared.work.notify_one();
        }
        Ok(())
    }

    /// Waits until everything appended so far is written; then the segments.
    pub fn written(&self) -> Result<Vec<SegmentMeta>, AppendError> {
        let mut s = self.shared.lock();
        let target = s.appended;
        while s.written < target {
            if let Some(e) = &s.failed {
                return Err(AppendError::Failed(e.clone()));
            }
            if self.thread_gone() {
                return Err(AppendError::Closed);
            }
            self.shared.work.notify_one();
            s = self
                .shared
                .written
                .wait_timeout(s, Duration::from_millis(200))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(s.segments.clone())
    }

    fn thread_gone(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(std::thread::JoinHandle::is_finished)
    }

    /// Why the writer cannot write now; `None` while it can.
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// The segments as they stand (what is pending not included).
    pub fn segments(&self) -> Vec<SegmentMeta> {
        self.shared.lock().segments.clone()
    }

    /// Forgets the segments `drop` selects (their files are removed by the caller).
    pub fn forget(&self, drop: &dyn Fn(&SegmentMeta) -> bool) -> Vec<SegmentMeta> {
        let mut s = self.shared.lock();
        // The segment being written is never forgotten.
        let current = s.current_seq;
        let (gone, kept) = std::mem::take(&mut s.segments)
            .into_iter()
            .partition(|m| Some(m.seq) != current && drop(m));
        s.segments = kept;
        gone
    }

    /// Writes what is pending, fsyncs and stops the writer.
    pub fn close(&self) {
        {
            let mut s = self.shared.lock();
            s.stop = true;
            self.shared.work.notify_one();
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.close();
    }
}

struct Open {
    file: File,
    meta: SegmentMeta,
    opened: Instant,
}

struct Writer {
    shared: Arc<Shared>,
    target: Target,
    current: Option<Open>,
    unsynced_since: Option<Instant>,
    /// The pending buffer last written, emptied, swapped in for the next.
    spare: Pending,
}

impl Writer {
    fn new(shared: Arc<Shared>, target: Target) -> Writer {
        Writer {
            shared,
            target,
            current: None,
            unsynced_since: None,
            spare: Pending::default(),
        }
    }

    fn run(mut self) {
        loop {
            let (mut batch, stop) = {
                let mut s = self.shared.lock();
                loop {
                    if !s.pending.is_empty() || s.stop {
                        break;
                    }
                    let sync = self
                        .unsynced_since
                        .map(|t| self.target.rolling.sync_every.saturating_sub(t.elapsed()));
                    let age = self.current.as_ref().map(|o| {
                        self.target
                            .rolling
                            .max_age
                            .saturating_sub(o.opened.elapsed())
                    });
                    let timeout = sync
                        .into_iter()
                        .chain(age)
                        .min()
                        .unwrap_or(Duration::from_secs(3600));
                    if timeout.is_zero() {
                        break;
                    }
                    s.writer_waiting = true;
                    s = self
                        .shared
                        .work
                        .wait_timeout(s, timeout)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    s.writer_waiting = false;
                }
                let mut batch = std::mem::take(&mut self.spare);
                std::mem::swap(&mut batch, &mut s.pending);
                (batch, s.stop)
            };
            let wrote = !batch.is_empty();
            if wrote {
                if let Err(e) = self.write(&batch) {
                    tracing::error!(error = %e, "writing decisions failed; new decisions are refused until a retry succeeds");
                    let mut s = self.shared.lock();
                    let mut again = batch;
                    again.append(&mut s.pending);
                    s.pending = again;
                    if !s.fatal {
                        s.failed = Some(e);
                    }
                    self.shared.written.notify_all();
                    if s.stop {
                        return;
                    }
                    drop(s);
                    std::thread::sleep(RETRY_AFTER);
                    continue;
                }
            }
            if self
                .unsynced_since
                .is_some_and(|t| stop || t.elapsed() >= self.target.rolling.sync_every)
            {
                if let Some(open) = &self.current {
                    if let Err(e) = open.file.sync_data() {
                        // The kernel may have dropped the pages it could not write, and a
                        // later fsync would not say so: refuse decisions until a restart
                        // reads back what the disk holds.
                        tracing::error!(error = %e, "fsync of the decision segment failed; decisions are refused until cofferd is restarted");
                        let mut s = self.shared.lock();
                        s.fatal = true;
                        s.failed = Some(format!(
                            "fsync failed ({e}): decisions since the last fsync may not be on disk; fix the storage and restart cofferd"
                        ));
                        self.shared.written.notify_all();
                    }
                }
                self.unsynced_since = None;
            }
            batch.clear();
            self.spare = batch;
            // A segment left idle past its age ends, so retention can remove it.
            if !wrote
                && self
                    .current
                    .as_ref()
                    .is_some_and(|o| o.opened.elapsed() >= self.target.rolling.max_age)
            {
                if let Err(e) = self.seal() {
                    tracing::error!(error = %e, "finishing the decision segment failed");
                }
            }
            if stop && self.shared.lock().pending.is_empty() {
                if let Err(e) = self.seal() {
                    tracing::error!(error = %e, "finishing the decision segment failed");
                }
                return;
            }
            if wrote && !stop {
                // More is likely on its way: gather it without being woken for it.
                std::thread::sleep(TICK);
            }
        }
    }

    /// Appends `batch` as one write; on success it counts as written.
    fn write(&mut self, batch: &Pending) -> Result<(), String> {
        let bytes = batch.bytes.len() as u64;
        let full = self.current.as_ref().is_some_and(|o| {
            o.meta.count > 0
                && (o.meta.bytes + bytes > self.target.rolling.max_bytes
                    || o.opened.elapsed() >= self.target.rolling.max_age)
        });
        if full {
            self.seal()?;
        }
        if self.current.is_none() {
            self.begin()?;
        }
        let open = self.current.as_mut().ok_or("no segment")?;
        if let Err(e) = open.file.write_all(&batch.bytes) {
            // The frames may be half written: cut them off, and write the retry to a
            // new segment in any case.
            let _ = open.file.set_len(open.meta.bytes);
            let _ = self.seal();
            return Err(e.to_string());
        }
        for e in &batch.entries {
            open.meta.add(e.at_ms, &e.version_key, e.len);
        }
        self.unsynced_since.get_or_insert_with(Instant::now);
        let mut s = self.shared.lock();
        s.written += batch.entries.len() as u64;
        s.pending_bytes = s.pending_bytes.saturating_sub(bytes as usize);
        if !s.fatal {
            s.failed = None;
        }
        match s.segments.last_mut() {
            Some(last) if last.seq == open.meta.seq => *last = open.meta.clone(),
            _ => s.segments.push(open.meta.clone()),
        }
        self.shared.written.notify_all();
        Ok(())
    }

    fn begin(&mut self) -> Result<(), String> {
        let seq = self.target.next_seq;
        let path = segment::path(&self.target.dir, seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // The number is used up once the file exists, whatever happens next.
        self.target.next_seq += 1;
        if let Err(e) = file.write_all(MAGIC) {
            let _ = std::fs::remove_file(&path);
            return Err(format!("{}: {e}", path.display()));
        }
        self.shared.lock().current_seq = Some(seq);
        self.current = Some(Open {
            file,
            meta: SegmentMeta::new(seq, super::record::now_ms()),
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Ends the current segment: fsynced, its summary kept.
    fn seal(&mut self) -> Result<(), String> {
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        self.unsynced_since = None;
        let done = if open.meta.count == 0 {
            // Nothing in it: not kept.
            let _ = std::fs::remove_file(segment::path(&self.target.dir, open.meta.seq));
            Ok(())
        } else {
            open.file
                .sync_all()
                .map_err(|e| e.to_string())
                .and_then(|()| (self.target.on_sealed)(&open.meta))
        };
        // Only now may retention remove it.
        self.shared.lock().current_seq = None;
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_frames_keep_their_order_and_bytes_and_share_a_version_key() {
        let mut p = Pending::default();
        p.push(1, "credit-lr", "1.0.0", b"aa");
        p.push(2, "credit-lr", "1.0.0", b"bbb");
        p.push(3, "credit-lr", "1.0.1", b"c");
        p.push(4, "credit-l", "r1.0.1", b"d");
        let keys: Vec<&str> = p.entries.iter().map(|e| &*e.version_key).collect();
        assert_eq!(
            keys,
            [
                "credit-lr@1.0.0",
                "credit-lr@1.0.0",
                "credit-lr@1.0.1",
                "credit-l@r1.0.1"
            ]
        );
        assert!(Arc::ptr_eq(
            &p.entries[0].version_key,
            &p.entries[1].version_key
        ));
        let mut later = Pending::default();
        later.push(5, "aml-risk", "2.0.0", b"ee");
        p.append(&mut later);
        assert!(later.is_empty() && later.bytes.is_empty());
        assert_eq!(p.bytes, b"aabbbcdee");
        let lens: Vec<(u64, usize)> = p.entries.iter().map(|e| (e.at_ms, e.len)).collect();
        assert_eq!(lens, [(1, 2), (2, 3), (3, 1), (4, 1), (5, 2)]);
        p.clear();
        assert!(p.is_empty() && p.bytes.is_empty());
    }
}
