//! A one-line progress bar on stderr for imports and verifications, drawn only when
//! stderr is a terminal.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use crate::format::mb;

/// How often a progress bar is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// The width of a progress bar between its brackets.
const BAR_WIDTH: usize = 30;

/// A one-line progress bar on stderr, drawn only when stderr is a terminal, at most ten
/// times a second plus once at 100%.
#[derive(Debug)]
pub struct ProgressBar {
    enabled: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl ProgressBar {
    pub fn new() -> ProgressBar {
        ProgressBar {
            enabled: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    /// Redraws `label [===>  ] 45% 12.3/27.1 MB` and `tail` in place.
    pub fn update(&mut self, label: &str, done: u64, total: u64, tail: &str) {
        if !self.enabled {
            return;
        }
        let finished = done >= total;
        if !finished && self.last.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.drawn = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}{tail}\x1b[K", bar_line(label, done, total));
        let _ = err.flush();
    }

    /// Ends the line of a bar that was drawn, so the next bar or message starts on its
    /// own line.
    pub fn next_line(&mut self) {
        if self.drawn {
            eprintln!();
        }
        self.drawn = false;
        self.last = None;
    }

    /// Ends the bar for good: later updates draw nothing.
    pub fn finish(&mut self) {
        self.next_line();
        self.enabled = false;
    }
}

fn bar_line(label: &str, done: u64, total: u64) -> String {
    let fraction = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let filled = ((fraction * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
    let mut bar = "=".repeat(filled);
    if filled < BAR_WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
    }
    format!(
        "{label} [{bar}] {:>3}% {}/{} MB",
        (fraction * 100.0) as u32,
        mb(done),
        mb(total)
    )
}

impl Default for ProgressBar {
    fn default() -> Self {
        ProgressBar::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_fraction_done() {
        assert_eq!(
            bar_line("importing m@1", 0, 2_000_000),
            format!("importing m@1 [>{}]   0% 0.0/2.0 MB", " ".repeat(29))
        );
        assert_eq!(
            bar_line("x", 1_000_000, 2_000_000),
            format!("x [{}>{}]  50% 1.0/2.0 MB", "=".repeat(15), " ".repeat(14))
        );
        assert_eq!(
            bar_line("x", 5, 5),
            format!("x [{}] 100% 0.0/0.0 MB", "=".repeat(30))
        );
        assert_eq!(
            bar_line("empty", 0, 0),
            format!("empty [{}] 100% 0.0/0.0 MB", "=".repeat(30))
        );
    }
}
