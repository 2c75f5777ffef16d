//! The dynamic batcher of one model version: requests queue in a bounded channel; the
//! model's own thread takes the first and everything queued behind it, keeps taking
//! requests that arrive within a short gap of each other for at most
//! `max_queue_delay_us` (never past `max_batch` rows), runs one batch, and splits the
//! outputs back per request.
//! A full queue refuses at once; dropping the batcher stops its thread.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use coffer_engine::EngineFaults;
use tokio::sync::oneshot;

use crate::engine::{EngineError, ScoreEngine};
use crate::metrics::ModelMetrics;
use crate::tensor::{BatchObserver, Tensor};

/// Why a submitted request got no result.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the model's queue is full")]
    QueueFull,
    #[error("the model is shutting down")]
    Stopped,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// How long the batcher waits for the next request of a stream before it runs the batch.
const ARRIVAL_GAP: Duration = Duration::from_micros(50);

struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Vec<Tensor>, BatchError>>,
}

/// Handle to a model version's batching thread.
#[derive(Debug)]
pub struct Batcher {
    tx: SyncSender<Job>,
}

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_batch: usize,
    pub max_delay: Duration,
    pub queue_capacity: usize,
}

impl Batcher {
    /// Starts the model's thread.
    pub fn spawn(
        name: &str,
        engine: Arc<dyn ScoreEngine>,
        limits: BatchLimits,
        metrics: ModelMetrics,
        observer: Option<Arc<dyn BatchObserver>>,
        faults: Arc<EngineFaults>,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = sync_channel(limits.queue_capacity.max(1));
        std::thread::Builder::new()
            .name(format!("score-{name}"))
            .spawn(move || {
                let run = Run {
                    engine: engine.as_ref(),
                    metrics: &metrics,
                    observer: observer.as_deref(),
                    faults: &faults,
                };
                run_loop(&rx, limits, &run);
            })?;
        Ok(Batcher { tx })
    }

    /// Queues `rows` rows and waits for their outputs.
    pub async fn submit(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
    ) -> Result<Vec<Tensor>, BatchError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            enqueued: Instant::now(),
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(BatchError::QueueFull),
            Err(TrySendError::Disconnected(_)) => return Err(BatchError::Stopped),
        }
        rx.await.unwrap_or(Err(BatchError::Stopped))
    }
}

/// What running a batch needs on the model's thread.
struct Run<'a> {
    engine: &'a dyn ScoreEngine,
    metrics: &'a ModelMetrics,
    observer: Option<&'a dyn BatchObserver>,
    faults: &'a EngineFaults,
}

fn run_loop(rx: &Receiver<Job>, limits: BatchLimits, run: &Run<'_>) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut rows = first.rows;
        let mut jobs = vec![first];
        let deadline = Instant::now() + limits.max_delay;
        while rows < limits.max_batch {
            // Take what is queued already. While requests keep arriving (others were queued
            // too) wait for the next one, but only for a short gap and never past max_delay:
            // a lone request on an idle model runs at once, and a group of clients that all
            // wait on this batch is not held back for the full delay.
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(ARRIVAL_GAP);
            let next = match rx.try_recv() {
                Ok(job) => Ok(job),
                Err(_) if jobs.len() > 1 && !wait.is_zero() => rx.recv_timeout(wait),
                Err(_) => Err(RecvTimeoutError::Timeout),
            };
            match next {
                Ok(job) if rows + job.rows > limits.max_batch => {
                    carried = Some(job);
                    break;
                }
                Ok(job) => {
                    rows += job.rows;
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        run_batch(run, jobs, rows);
    }
}

fn concat(jobs: &[Job], rows: usize) -> Option<Vec<Tensor>> {
    let first = &jobs.first()?.inputs;
    let mut merged = Vec::with_capacity(first.len());
    for (i, template) in first.iter().enumerate() {
        let mut data = crate::tensor::TensorData::with_capacity(
            template.data.datatype(),
            rows * template.row_len(),
        );
        for job in jobs {
            if !data.extend_from(&job.inputs.get(i)?.data) {
                return None;
            }
        }
        let mut shape = template.shape.clone();
        shape[0] = rows;
        merged.push(Tensor {
            name: template.name.clone(),
            shape,
            data,
        });
    }
    Some(merged)
}

/// Runs one batch and delivers it. The engine and the observer run contained: a panic
/// fails this batch's requests only, and the thread takes the next batch.
fn run_batch(run: &Run<'_>, mut jobs: Vec<Job>, rows: usize) {
    let started = Instant::now();
    for job in &jobs {
        run.metrics
            .queue_seconds
            .observe(started.duration_since(job.enqueued).as_secs_f64());
    }
    let contained = run.faults.contain("scoring batch", || {
        if let Some(o) = run.observer {
            for job in &jobs {
                o.inputs(&job.inputs);
            }
        }
        let result = if jobs.len() == 1 {
            run.engine.run(std::mem::take(&mut jobs[0].inputs), rows)
        } else {
            match concat(&jobs, rows) {
                Some(inputs) => run.engine.run(inputs, rows),
                None => Err(EngineError::Run(
                    "the inputs of a batch did not line up".into(),
                )),
            }
        };
        if let (Some(o), Ok(outputs)) = (run.observer, &result) {
            o.outputs(outputs);
        }
        result
    });
    run.metrics.observe_batch(rows, started.elapsed());
    let result = contained.unwrap_or_else(|p| Err(EngineError::Run(p.to_string())));
    deliver(jobs, rows, result);
}

/// Sends each job its rows of the outputs, or the error.
fn deliver(mut jobs: Vec<Job>, rows: usize, result: Result<Vec<Tensor>, EngineError>) {
    let outputs = match result {
        Ok(outputs) if outputs.iter().all(|o| o.rows() == rows) => outputs,
        Ok(_) => {
            let e = "an output's batch size differs from the input's";
            jobs.into_iter()
                .for_each(|j| drop(j.reply.send(Err(EngineError::Run(e.into()).into()))));
            return;
        }
        Err(e) => {
            let message = e.to_string();
            jobs.into_iter()
                .for_each(|j| drop(j.reply.send(Err(EngineError::Run(message.clone()).into()))));
            return;
        }
    };
    if jobs.len() == 1 {
        if let Some(job) = jobs.pop() {
            let _ = job.reply.send(Ok(outputs));
        }
        return;
    }
    let mut offset = 0;
    for job in jobs {
        let part = outputs
            .iter()
            .map(|o| o.rows_slice(offset, offset + job.rows))
            .collect();
        offset += job.rows;
        let _ = job.reply.send(Ok(part));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use coffer_models::{Datatype, TensorSpec};
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::metrics::ScoreMetrics;
    use crate::tensor::TensorData;

    /// Doubles its input; records batch sizes; sleeps to let a queue build up.
    #[derive(Debug)]
    struct Doubler {
        spec: Vec<TensorSpec>,
        batches: Mutex<Vec<usize>>,
        delay: Duration,
    }

    impl ScoreEngine for Doubler {
        fn platform(&self) -> &'static str {
            "test"
        }
        fn inputs(&self) -> &[TensorSpec] {
            &self.spec
        }
        fn outputs(&self) -> &[TensorSpec] {
            &self.spec
        }
        fn run(&self, inputs: Vec<Tensor>, rows: usize) -> Result<Vec<Tensor>, EngineError> {
            std::thread::sleep(self.delay);
            self.batches.lock().unwrap().push(rows);
            let TensorData::F32(x) = &inputs[0].data else {
                return Err(EngineError::Run("not FP32".into()));
            };
            // Fault injection: a row of -1 panics the engine, as a crafted input can.
            assert!(!x.contains(&-1.0), "injected engine panic");
            Ok(vec![Tensor {
                name: "x".into(),
                shape: vec![rows, 1],
                data: TensorData::F32(x.iter().map(|v| v * 2.0).collect()),
            }])
        }
    }

    fn setup(delay: Duration, limits: BatchLimits) -> (Arc<Doubler>, Batcher) {
        let engine = Arc::new(Doubler {
            spec: vec![TensorSpec {
                name: "x".into(),
                datatype: Datatype::Fp32,
                shape: vec![-1, 1],
                features: vec![],
            }],
            batches: Mutex::new(Vec::new()),
            delay,
        });
        let metrics = ScoreMetrics::register(&mut Registry::default()).for_model("m", "1");
        let faults = coffer_engine::FaultWatch::default().for_version("m", "1");
        let batcher = Batcher::spawn("m", engine.clone(), limits, metrics, None, faults).unwrap();
        (engine, batcher)
    }

    #[tokio::test]
    async fn a_panicking_batch_fails_alone_and_the_thread_carries_on() {
        let limits = BatchLimits {
            max_batch: 1,
            max_delay: Duration::ZERO,
            queue_capacity: 4,
        };
        let (_engine, batcher) = setup(Duration::ZERO, limits);
        let e = batcher.submit(row(-1.0), 1).await.unwrap_err();
        assert!(
            e.to_string().contains("restarted"),
            "the request in hand gets the failure: {e}"
        );
        for v in [1.0, 2.0] {
            let out = batcher.submit(row(v), 1).await.unwrap();
            assert_eq!(out[0].data, TensorData::F32(vec![v * 2.0]));
        }
    }

    fn row(v: f32) -> Vec<Tensor> {
        vec![Tensor {
            name: "x".into(),
            shape: vec![1, 1],
            data: TensorData::F32(vec![v]),
        }]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_coalesce_and_get_their_own_rows() {
        let limits = BatchLimits {
            max_batch: 8,
            max_delay: Duration::from_millis(50),
            queue_capacity: 64,
        };
        // Each batch computes for 300 ms: whatever arrives meanwhile waits in the queue and
        // goes out together, however slowly a busy machine spawns the clients.
        let (engine, batcher) = setup(Duration::from_millis(300), limits);
        let batcher = Arc::new(batcher);
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let b = Arc::clone(&batcher);
                tokio::spawn(async move { (i, b.submit(row(i as f32), 1).await.unwrap()) })
            })
            .collect();
        for t in tasks {
            let (i, out) = t.await.unwrap();
            assert_eq!(out[0].data, TensorData::F32(vec![i as f32 * 2.0]));
        }
        let batches = engine.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 16);
        assert!(batches.iter().all(|&b| b <= 8), "{batches:?}");
        assert!(batches.len() < 16, "nothing was batched: {batches:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let limits = BatchLimits {
            max_batch: 1,
            max_delay: Duration::ZERO,
            queue_capacity: 1,
        };
        let (_engine, batcher) = setup(Duration::from_millis(300), limits);
        let batcher = Arc::new(batcher);
        let mut pending = Vec::new();
        for i in 0..2 {
            let b = Arc::clone(&batcher);
            pending.push(tokio::spawn(async move {
                b.submit(row(i as f32), 1).await.map(|_| ())
            }));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // One job runs (300 ms), one waits in the queue of one: the third is refused.
        assert!(matches!(
            batcher.submit(row(9.0), 1).await,
            Err(BatchError::QueueFull)
        ));
        for p in pending {
            assert!(p.await.unwrap().is_ok());
        }
    }
}
