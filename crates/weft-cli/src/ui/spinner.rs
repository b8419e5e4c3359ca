//! The spinner of a turn, on stderr: while the model has not answered yet
//! ("waiting for the model", elapsed time) and while tools run (each
//! running tool's name and a short argument summary, several at once shown
//! together). It is cleared before anything else is written to the
//! terminal, so it never mixes with the streamed answer. It knows nothing
//! of sessions or events: the printer tells it what happens.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// What is on the terminal's last line: the bar drawn now (a spinner or a
/// progress bar), and whether a question waits for an answer there (then
/// no new bar is drawn).
#[derive(Default)]
struct Screen {
    bar: Option<ProgressBar>,
    prompting: bool,
}

static SCREEN: Mutex<Screen> = Mutex::new(Screen {
    bar: None,
    prompting: false,
});

fn screen() -> std::sync::MutexGuard<'static, Screen> {
    SCREEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` (which writes to the terminal: a notice, a warning) with the
/// bar on screen, if any, taken off and drawn again afterwards.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = screen().bar.clone();
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// [`suspend`] for a question asked on the terminal (an approval): no bar
/// is drawn until `f` returns, so none overwrites the question.
pub fn prompt<R>(f: impl FnOnce() -> R) -> R {
    let bar = {
        let mut screen = screen();
        screen.prompting = true;
        screen.bar.clone()
    };
    let result = match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    };
    screen().prompting = false;
    result
}

/// Registers `bar` as the one on screen (see [`suspend`]); None: no bar.
/// Returns false, registering nothing, while a question waits
/// ([`prompt`]).
pub(crate) fn register(bar: Option<&ProgressBar>) -> bool {
    let mut screen = screen();
    if bar.is_some() && screen.prompting {
        return false;
    }
    screen.bar = bar.cloned();
    true
}

/// How often a spinner moves.
const TICK: Duration = Duration::from_millis(100);

/// The spinner of one turn. Without a terminal ([`Activity::new`] with
/// `enabled` false) it draws nothing and [`Activity::println`] prints
/// plainly.
#[derive(Debug)]
pub struct Activity {
    enabled: bool,
    bar: Option<ProgressBar>,
    /// What is awaited when no tool runs (None: nothing, no spinner).
    waiting: Option<&'static str>,
    /// The running tools: call id and label.
    tools: Vec<(String, String)>,
    /// Whether the bar shows tools (else the wait): its clock restarts
    /// when that changes.
    showing_tools: bool,
}

impl Activity {
    /// A spinner that draws only when `enabled` (stderr is a terminal).
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            bar: None,
            waiting: None,
            tools: Vec::new(),
            showing_tools: false,
        }
    }

    /// Shows `label` ("waiting for the model", "thinking") with the time
    /// spent, unless tools run.
    pub fn waiting(&mut self, label: &'static str) {
        self.waiting = Some(label);
        self.refresh();
    }

    /// A tool call started: `label` is its name and argument summary.
    pub fn tool_started(&mut self, id: &str, label: String) {
        self.waiting = None;
        self.tools.push((id.to_string(), label));
        self.refresh();
    }

    /// A tool call ended.
    pub fn tool_ended(&mut self, id: &str) {
        if let Some(i) = self.tools.iter().position(|(t, _)| t == id) {
            self.tools.remove(i);
        }
        self.refresh();
    }

    /// Output starts (or the turn ended): the spinner goes, whatever it
    /// showed; tools still running stay known for [`Activity::tool_ended`].
    pub fn clear(&mut self) {
        self.waiting = None;
        self.tools.clear();
        self.hide();
    }

    /// Whether something is drawn now.
    #[cfg(test)]
    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
    }

    /// Prints `line` on stderr, above the spinner when one is drawn.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// What the spinner says now (None: nothing to show).
    pub fn message(&self) -> Option<String> {
        match self.tools.as_slice() {
            [] => self.waiting.map(str::to_string),
            [(_, one)] => Some(format!("running {one}")),
            many => Some(format!(
                "running {} tools: {}",
                many.len(),
                many.iter()
                    .map(|(_, l)| l.as_str())
                    .collect::<Vec<_>>()
                    .join(" · ")
            )),
        }
    }

    fn refresh(&mut self) {
        let Some(message) = self.message() else {
            self.hide();
            return;
        };
        if !self.enabled {
            return;
        }
        let message = fit(&message, width().saturating_sub(16));
        let tools = !self.tools.is_empty();
        match &self.bar {
            Some(bar) => {
                if tools != self.showing_tools {
                    bar.reset_elapsed();
                }
                bar.set_message(message);
            }
            None => {
                // Hidden until registered: nothing is drawn over a question.
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                bar.set_style(spinner_style());
                bar.set_message(message);
                if !register(Some(&bar)) {
                    return;
                }
                bar.set_draw_target(ProgressDrawTarget::stderr());
                bar.enable_steady_tick(TICK);
                self.bar = Some(bar);
            }
        }
        self.showing_tools = tools;
    }

    fn hide(&mut self) {
        if let Some(bar) = self.bar.take() {
            register(None);
            bar.finish_and_clear();
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.hide();
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} · {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
}

/// A short summary of a tool's arguments: the main one (a command, a
/// path, a pattern, a URL, a query) when the arguments have one, else the
/// first text argument, else the arguments as JSON; at most `max`
/// characters on one line.
pub fn summarize_arguments(arguments: &Value, max: usize) -> String {
    const MAIN: [&str; 7] = [
        "command",
        "path",
        "file_path",
        "pattern",
        "url",
        "query",
        "prompt",
    ];
    let text = match arguments {
        Value::Object(map) => MAIN
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str))
            .or_else(|| map.values().find_map(Value::as_str))
            .map(str::to_string)
            .unwrap_or_else(|| arguments.to_string()),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    fit(&text.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

/// The terminal's width (80 when unknown).
pub fn width() -> usize {
    crossterm::terminal::size()
        .map(|(w, _)| usize::from(w))
        .ok()
        .filter(|w| *w > 0)
        .unwrap_or(80)
}

/// `text` shortened to `max` characters (an ellipsis marks the cut).
pub fn fit(text: &str, max: usize) -> String {
    let max = max.max(8);
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_what_runs() {
        let mut a = Activity::new(false);
        assert_eq!(a.message(), None);
        a.waiting("waiting for the model");
        assert_eq!(a.message().as_deref(), Some("waiting for the model"));
        a.tool_started("1", "bash(sleep 1)".into());
        assert_eq!(a.message().as_deref(), Some("running bash(sleep 1)"));
        a.tool_started("2", "read_file(a.txt)".into());
        assert_eq!(
            a.message().as_deref(),
            Some("running 2 tools: bash(sleep 1) · read_file(a.txt)")
        );
        a.tool_ended("1");
        assert_eq!(a.message().as_deref(), Some("running read_file(a.txt)"));
        a.tool_ended("2");
        assert_eq!(a.message(), None, "after the tools, nothing until told");
        assert!(!a.is_drawn(), "nothing is drawn without a terminal");
    }

    #[test]
    fn arguments_are_summarized() {
        let args = serde_json::json!({"timeout": 5, "command": "sleep  1\necho"});
        assert_eq!(summarize_arguments(&args, 40), "sleep 1 echo");
        let args = serde_json::json!({"x": 1, "name": "n"});
        assert_eq!(summarize_arguments(&args, 40), "n");
        let args = serde_json::json!({"x": 1});
        assert_eq!(summarize_arguments(&args, 40), r#"{"x":1}"#);
    }

    #[test]
    fn fit_cuts_long_text() {
        assert_eq!(fit("short", 20), "short");
        assert_eq!(fit("0123456789abcdef", 10), "012345678…");
    }
}
