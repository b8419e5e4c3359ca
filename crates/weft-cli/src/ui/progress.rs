//! Progress bars on stderr for work over many items (importing, cleaning
//! up, exporting, checking a store). Drawn only when stderr is a capable
//! terminal and not `--quiet` ([`super::Settings::animate`]); otherwise
//! every call does nothing and lines print plainly. It is what the store's
//! long work reports to ([`weft_core::progress::Progress`]) and knows
//! nothing of what the items are.

use indicatif::{ProgressBar, ProgressStyle};

use super::spinner;

/// A progress bar for `len` items; see the module doc.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar saying `what` ("importing sessions") over `len` items.
    pub fn new(what: &str, len: u64) -> Self {
        Self::with(what, len, super::settings().animate)
    }

    /// [`Progress::new`], drawn only when `draw`.
    pub fn with(what: &str, len: u64, draw: bool) -> Self {
        if !draw {
            return Self { bar: None };
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} · {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        if !spinner::register(Some(&bar)) {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            return Self { bar: None };
        }
        Self { bar: Some(bar) }
    }

    /// `n` more items done.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// The number of items, once known better.
    pub fn set_len(&self, len: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(len);
        }
    }

    /// Whether a bar is drawn.
    #[cfg(test)]
    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
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
        if let Some(bar) = self.bar.take() {
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
    }
}
