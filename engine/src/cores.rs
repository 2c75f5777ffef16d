//! The cores that chat and scoring share. Scoring is latency-bound (a credit decision
//! waits on one row), chat is throughput-bound (tokens over seconds), and llama.cpp's
//! threads spin on every core they are given: a scoring request that lands beside them
//! waits for the kernel to preempt one, and an embedding engine's threads beside them
//! oversubscribe the cores. [`CoreShare`] is the signal between them: each scoring and
//! embedding request marks it, and the chat engine reads it before every decode step,
//! running on fewer threads while such requests came in lately (`quiet`) and on all of
//! them once they have been quiet that long. Nothing blocks on it: one atomic store per
//! request, one load per decode step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct CoreShare {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last scoring request, plus one; 0: none yet.
    last_scoring: AtomicU64,
    quiet: Duration,
}

impl CoreShare {
    /// `quiet`: how long after the last scoring request chat keeps to its fewer threads.
    pub fn new(quiet: Duration) -> CoreShare {
        CoreShare {
            epoch: Instant::now(),
            last_scoring: AtomicU64::new(0),
            quiet,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// A scoring (or embedding) request is being served. Written only when the
    /// millisecond changed, so busy workers do not keep taking the line from each other.
    pub fn scoring(&self) {
        let now = self.now_ms() + 1;
        if self.last_scoring.load(Ordering::Relaxed) != now {
            self.last_scoring.store(now, Ordering::Relaxed);
        }
    }

    /// Whether a scoring request came in within the last `quiet`.
    pub fn scoring_lately(&self) -> bool {
        let last = self.last_scoring.load(Ordering::Relaxed);
        last != 0 && u128::from(self.now_ms().saturating_sub(last - 1)) < self.quiet.as_millis()
    }

    /// The threads a chat engine configured with `all` threads, and `beside` threads
    /// while scoring runs, decodes its next step with.
    pub fn chat_threads(&self, all: usize, beside: usize) -> usize {
        if self.scoring_lately() {
            beside.min(all).max(1)
        } else {
            all.max(1)
        }
    }
}

impl Default for CoreShare {
    /// Two seconds of quiet before chat takes its threads back.
    fn default() -> CoreShare {
        CoreShare::new(Duration::from_secs(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_has_every_thread_until_scoring_comes() {
        let share = CoreShare::new(Duration::from_secs(60));
        assert!(!share.scoring_lately());
        assert_eq!(share.chat_threads(4, 3), 4);
        share.scoring();
        assert!(share.scoring_lately());
        assert_eq!(share.chat_threads(4, 3), 3);
        // Never more than all, never none.
        assert_eq!(share.chat_threads(2, 5), 2);
        assert_eq!(share.chat_threads(2, 0), 1);
    }

    #[test]
    fn chat_takes_its_threads_back_once_scoring_is_quiet() {
        let share = CoreShare::new(Duration::from_millis(30));
        share.scoring();
        assert_eq!(share.chat_threads(2, 1), 1);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!share.scoring_lately());
        assert_eq!(share.chat_threads(2, 1), 2);
        share.scoring();
        assert_eq!(share.chat_threads(2, 1), 1);
    }

    #[test]
    fn a_zero_quiet_never_takes_a_thread() {
        let share = CoreShare::new(Duration::ZERO);
        share.scoring();
        assert_eq!(share.chat_threads(2, 1), 2);
    }
}
