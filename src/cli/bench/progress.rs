//! Progress display on stderr, and the bounded waits (in wall-clock time) that show it.

use std::io::{IsTerminal, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(super) struct Progress {
    quiet: bool,
    tty: bool,
    last: Mutex<(String, Instant)>,
}

impl Progress {
    pub(super) fn new(quiet: bool) -> Self {
        Self {
            quiet,
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new((String::new(), Instant::now())),
        }
    }

    /// Shows `phase` of the row for `n` nodes, `frac` done (0 to 1), and a detail.
    pub(super) fn show(&self, n: usize, phase: &str, frac: f64, detail: &str) {
        if self.quiet {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let head = format!("N={n} {phase}");
        let mut err = std::io::stderr().lock();
        if self.tty {
            let width = 24;
            let full = ((frac.clamp(0.0, 1.0)) * width as f64).round() as usize;
            let bar = format!("{}{}", "#".repeat(full), ".".repeat(width - full));
            let _ = write!(err, "\r\x1b[2K[{bar}] {head} {detail}");
            let _ = err.flush();
        } else if last.0 != head || last.1.elapsed() > Duration::from_secs(10) {
            // Not a terminal: one line per phase, and one every 10 s within a long one.
            let _ = writeln!(err, "bench: {head} {detail}");
            *last = (head, Instant::now());
        }
    }

    pub(super) fn clear(&self) {
        if !self.quiet && self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// Sleeps in small steps until `cond` holds or `limit` passes; shows progress. Returns
/// the time it took, if it held.
pub(super) async fn wait_until(
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    mut show: impl FnMut(f64),
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        let e = start.elapsed();
        if e >= limit {
            return None;
        }
        show(e.as_secs_f64() / limit.as_secs_f64());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) async fn sleep_showing(d: Duration, mut show: impl FnMut(f64)) {
    let start = Instant::now();
    while start.elapsed() < d {
        show(start.elapsed().as_secs_f64() / d.as_secs_f64());
        tokio::time::sleep(Duration::from_millis(100).min(d.saturating_sub(start.elapsed()))).await;
    }
}
