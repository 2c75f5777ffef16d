//! The progress bar that `add` and `export-bundle` draw while they copy files.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// A one-line progress bar on stderr when it is a terminal; a final line otherwise.
#[derive(Debug)]
pub(super) struct Progress {
    label: String,
    tty: bool,
    last: Instant,
}

impl Progress {
    pub(super) fn new(label: &str) -> Progress {
        Progress {
            label: label.into(),
            tty: std::io::stderr().is_terminal(),
            last: Instant::now() - Duration::from_secs(1),
        }
    }

    pub(super) fn update(&mut self, done: u64, total: u64) {
        if !self.tty || (self.last.elapsed() < Duration::from_millis(100) && done < total) {
            return;
        }
        self.last = Instant::now();
        let width = 30usize;
        let filled = if total == 0 {
            width
        } else {
            ((done as f64 / total as f64) * width as f64) as usize
        };
        let _ = write!(
            std::io::stderr(),
            "\r{} [{}{}] {:.1}/{:.1} MiB",
            self.label,
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width)),
            done as f64 / 1048576.0,
            total as f64 / 1048576.0
        );
        if done >= total {
            let _ = writeln!(std::io::stderr());
        }
    }
}
