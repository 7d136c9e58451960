//! Progress display on stderr, and the bounded waits (in wall-clock time) that show it.
//!
//! On a terminal each phase of a row gets an `indicatif` bar. indicatif hides its bars
//! when stderr is not a terminal, which would leave CI logs of a long run silent, so
//! there the display falls back to plain lines: one per phase, and one every
//! [`LOG_EVERY`] within a long phase.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// How often a plain log line repeats within one long phase.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A bar's length: the fraction done is shown in steps of 0.1 %.
const STEPS: u64 = 1000;

/// The progress display of a run, shared by its rows (and by the simulator's thread).
pub(super) struct Progress {
    quiet: bool,
    state: Mutex<State>,
}

/// What is on screen: the current phase's bar, or the last plain line and when it was
/// printed.
struct State {
    /// The phase (`N=… phase`) being shown.
    head: String,
    /// Its bar; `None` after [`Progress::clear`] or before the first phase.
    bar: Option<ProgressBar>,
    /// When the last plain line was printed (stderr not a terminal).
    logged: Instant,
}

impl Progress {
    /// A display on stderr; `quiet` shows nothing.
    pub(super) fn new(quiet: bool) -> Self {
        Self {
            quiet,
            state: Mutex::new(State {
                head: String::new(),
                bar: None,
                logged: Instant::now(),
            }),
        }
    }

    /// Shows `phase` of the row for `n` nodes, `frac` done (0 to 1), and a detail.
    pub(super) fn show(&self, n: usize, phase: &str, frac: f64, detail: &str) {
        if self.quiet {
            return;
        }
        let head = format!("N={n} {phase}");
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let new_phase = st.head != head || st.bar.is_none();
        if new_phase {
            if let Some(old) = st.bar.take() {
                old.finish_and_clear();
            }
            st.bar = Some(phase_bar(&head));
        }
        let Some(bar) = st.bar.as_ref() else {
            return;
        };
        if bar.is_hidden() {
            let now = Instant::now();
            if let Some(line) = plain_line(&mut st, &head, detail, now) {
                eprintln!("{line}");
            }
        } else {
            bar.set_position((frac.clamp(0.0, 1.0) * STEPS as f64).round() as u64);
            bar.set_message(detail.to_string());
        }
        st.head = head;
    }

    /// Removes the bar, so that a line can be printed in its place.
    pub(super) fn clear(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = st.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// A bar for one phase: `[####....] N=10 joining detail`, as the display looked before
/// indicatif drew it.
fn phase_bar(head: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("[{bar:24}] {prefix} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#.");
    ProgressBar::with_draw_target(Some(STEPS), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_prefix(head.to_string())
        // Cleared, not left behind, if a row ends without `clear`.
        .with_finish(ProgressFinish::AndClear)
}

/// The plain line to print for `head` at `now`, if one is due: at a new phase (`st.head`
/// is still the previous one), or [`LOG_EVERY`] after the last line within one.
fn plain_line(st: &mut State, head: &str, detail: &str, now: Instant) -> Option<String> {
    let due = st.head != head || now.saturating_duration_since(st.logged) > LOG_EVERY;
    if !due {
        return None;
    }
    st.logged = now;
    Some(format!("bench: {head} {detail}"))
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

/// Sleeps for `d`, showing the fraction of it that has passed.
pub(super) async fn sleep_showing(d: Duration, mut show: impl FnMut(f64)) {
    let start = Instant::now();
    while start.elapsed() < d {
        show(start.elapsed().as_secs_f64() / d.as_secs_f64());
        tokio::time::sleep(Duration::from_millis(100).min(d.saturating_sub(start.elapsed()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            head: String::new(),
            bar: None,
            logged: Instant::now(),
        }
    }

    #[test]
    fn plain_lines_one_per_phase_and_one_per_interval() {
        let mut st = state();
        let t0 = Instant::now();
        assert_eq!(
            plain_line(&mut st, "N=10 joining", "", t0).as_deref(),
            Some("bench: N=10 joining ")
        );
        st.head = "N=10 joining".into();
        // The same phase again, soon: nothing.
        assert_eq!(
            plain_line(&mut st, "N=10 joining", "", t0 + Duration::from_secs(9)),
            None
        );
        // The same phase after the interval: one more line.
        assert!(plain_line(
            &mut st,
            "N=10 joining",
            "x",
            t0 + LOG_EVERY + Duration::from_secs(1)
        )
        .is_some());
        // A new phase: a line at once.
        let t1 = t0 + LOG_EVERY + Duration::from_secs(2);
        assert_eq!(
            plain_line(&mut st, "N=10 idle", "virtual", t1).as_deref(),
            Some("bench: N=10 idle virtual")
        );
    }

    #[test]
    fn quiet_shows_no_bar() {
        let p = Progress::new(true);
        p.show(10, "joining", 0.5, "");
        let st = p.state.lock().unwrap_or_else(|e| e.into_inner());
        assert!(st.bar.is_none());
    }

    #[tokio::test]
    async fn wait_until_returns_when_the_condition_holds() {
        let mut calls = 0;
        let took = wait_until(
            Duration::from_secs(30),
            || {
                calls += 1;
                calls >= 3
            },
            |_| {},
        )
        .await;
        assert!(took.is_some_and(|d| d < Duration::from_secs(30)));
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn wait_until_gives_up_at_the_limit() {
        let limit = Duration::from_millis(30);
        let mut shown = 0;
        let took = wait_until(
            limit,
            || false,
            |f| {
                assert!((0.0..1.0).contains(&f));
                shown += 1;
            },
        )
        .await;
        assert_eq!(took, None);
        assert!(shown > 0);
    }
}
