//! Progress bars on stderr for work over many items (importing, cleaning
//! up, exporting, checking a store). Drawn only when stderr is a capable
//! terminal and not `--quiet` ([`super::Settings::animate`]); otherwise
//! every call does nothing and lines print plainly. It is what the store's
//! long work reports to ([`weft_core::progress::Progress`]) and knows
//! nothing of what the items are.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::spinner;

/// A progress bar for `len` items; see the module doc. It is drawn once
/// there is something to count (no bar flashes for zero items).
#[derive(Debug)]
pub struct Progress {
    what: String,
    draw: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    /// A bar saying `what` ("importing sessions") over `len` items (0:
    /// not known yet, see [`Progress::set_len`]).
    pub fn new(what: &str, len: u64) -> Self {
        Self::with(what, len, super::settings().animate)
    }

    /// [`Progress::new`], drawn only when `draw`.
    pub fn with(what: &str, len: u64, draw: bool) -> Self {
        let progress = Self {
            what: what.to_string(),
            draw,
            bar: Mutex::new(None),
        };
        progress.set_len(len);
        progress
    }

    fn bar(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `n` more items done.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &*self.bar() {
            bar.inc(n);
        }
    }

    /// The number of items, once known (better).
    pub fn set_len(&self, len: u64) {
        let mut slot = self.bar();
        if let Some(bar) = &*slot {
            bar.set_length(len);
            return;
        }
        if !self.draw || len == 0 {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} · {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(self.what.clone());
        // Not over a question waiting for its answer.
        if spinner::register(Some(&bar)) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            *slot = Some(bar);
        }
    }

    /// Whether a bar is drawn.
    #[cfg(test)]
    pub fn is_drawn(&self) -> bool {
        self.bar().is_some()
    }
}

/// The store's work reports to the bar.
impl weft_core::progress::Progress for Progress {
    fn start(&self, total: u64) {
        self.set_len(total);
    }

    fn advance(&self, n: u64) {
        self.inc(n);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar().take() {
            spinner::register(None);
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_terminal_nothing_is_drawn() {
        let p = Progress::with("counting", 3, false);
        p.inc(1);
        p.set_len(4);
        assert!(!p.is_drawn());
        // Nothing to count: no bar, even on a terminal.
        assert!(!Progress::with("counting", 0, true).is_drawn());
    }
}
