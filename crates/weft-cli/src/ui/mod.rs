//! The terminal experience: how much to print and how (`--color`,
//! `--raw`, `-q/--quiet`, `[ui]` in config.toml, `NO_COLOR`, `TERM=dumb`,
//! whether stdout and stderr are terminals), and the pieces that use it —
//! spinners ([`spinner`]), progress bars ([`progress`]), Markdown
//! rendering of answers ([`markdown`]) and the per-turn summary
//! ([`summary`]). It knows nothing of sessions or stores: callers hand it
//! text, counts and events.

pub mod markdown;
pub mod progress;
pub mod spinner;
pub mod summary;

use std::io::IsTerminal;
use std::sync::RwLock;

use serde::Deserialize;

/// When to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set or `TERM=dumb`.
    #[default]
    Auto,
    /// Always, even piped.
    Always,
    /// Never.
    Never,
}

/// The terminal flags every command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UiArgs {
    /// Colours: auto (on a terminal, unless NO_COLOR is set or TERM=dumb),
    /// always or never (default: `[ui] color` in config.toml, else auto).
    #[arg(long, global = true, value_enum, value_name = "WHEN")]
    pub color: Option<ColorChoice>,
    /// Print answers as the model wrote them, without rendering Markdown
    /// (also `[ui] raw = true` in config.toml).
    #[arg(long, global = true)]
    pub raw: bool,
    /// Print only the answer: no spinners, progress, tool lines or summaries.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The `[ui]` table of config.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Print answers without rendering Markdown.
    #[serde(default)]
    pub raw: bool,
    /// When to colour the output (auto, always, never).
    #[serde(default)]
    pub color: Option<ColorChoice>,
}

/// What the terminal side of this process may do, decided once (the
/// default: plain output, what a pipe gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Colour what goes to stdout.
    pub color_stdout: bool,
    /// Colour what goes to stderr.
    pub color_stderr: bool,
    /// Render answers as Markdown (stdout is a terminal, not `--raw`).
    pub markdown: bool,
    /// Draw spinners and progress bars (stderr is a capable terminal, not
    /// `--quiet`).
    pub animate: bool,
    /// Print only the answer.
    pub quiet: bool,
    /// stderr is a terminal: per-turn summaries are printed.
    pub stderr_terminal: bool,
}

/// What the environment says about the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Environment {
    /// stdout is a terminal.
    pub stdout_terminal: bool,
    /// stderr is a terminal.
    pub stderr_terminal: bool,
    /// `NO_COLOR` is set to something.
    pub no_color: bool,
    /// `TERM=dumb`.
    pub dumb: bool,
}

impl Environment {
    /// This process's environment.
    pub fn current() -> Self {
        Self {
            stdout_terminal: std::io::stdout().is_terminal(),
            stderr_terminal: std::io::stderr().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            dumb: std::env::var("TERM").is_ok_and(|t| t == "dumb"),
        }
    }
}

impl Settings {
    /// Decides from the flags (over the config) and the environment.
    pub fn decide(args: &UiArgs, config: &UiConfig, env: Environment) -> Self {
        let choice = args.color.or(config.color).unwrap_or_default();
        let color = |terminal: bool| match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !env.no_color && !env.dumb,
        };
        Self {
            color_stdout: color(env.stdout_terminal),
            color_stderr: color(env.stderr_terminal),
            markdown: env.stdout_terminal && !args.raw && !config.raw,
            animate: env.stderr_terminal && !env.dumb && !args.quiet,
            quiet: args.quiet,
            stderr_terminal: env.stderr_terminal,
        }
    }
}

/// Plain output, until [`set`].
const PLAIN: Settings = Settings {
    color_stdout: false,
    color_stderr: false,
    markdown: false,
    animate: false,
    quiet: false,
    stderr_terminal: false,
};

static SETTINGS: RwLock<Settings> = RwLock::new(PLAIN);

/// Sets the process's terminal settings (once the flags and the config
/// are known; until then, plain output).
pub fn set(settings: Settings) {
    *SETTINGS.write().unwrap_or_else(|e| e.into_inner()) = settings;
}

/// The process's terminal settings.
pub fn settings() -> Settings {
    *SETTINGS.read().unwrap_or_else(|e| e.into_inner())
}

/// `text` in the SGR style `code` (`"2"` dim, `"1"` bold, …) when `color`,
/// else as it is.
pub fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(terminal: bool) -> Environment {
        Environment {
            stdout_terminal: terminal,
            stderr_terminal: terminal,
            no_color: false,
            dumb: false,
        }
    }

    #[test]
    fn a_terminal_gets_colour_markdown_and_spinners() {
        let s = Settings::decide(&UiArgs::default(), &UiConfig::default(), env(true));
        assert!(s.color_stdout && s.color_stderr && s.markdown && s.animate);
    }

    #[test]
    fn a_pipe_gets_plain_text() {
        let s = Settings::decide(&UiArgs::default(), &UiConfig::default(), env(false));
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn no_color_and_dumb_terminals_and_flags() {
        let mut e = env(true);
        e.no_color = true;
        let s = Settings::decide(&UiArgs::default(), &UiConfig::default(), e);
        assert!(!s.color_stdout && s.markdown && s.animate);
        let always = UiArgs {
            color: Some(ColorChoice::Always),
            ..Default::default()
        };
        assert!(Settings::decide(&always, &UiConfig::default(), e).color_stdout);
        e.no_color = false;
        e.dumb = true;
        let s = Settings::decide(&UiArgs::default(), &UiConfig::default(), e);
        assert!(!s.color_stderr && !s.animate);
        let never = UiArgs {
            color: Some(ColorChoice::Never),
            ..Default::default()
        };
        let config = UiConfig {
            color: Some(ColorChoice::Always),
            raw: true,
        };
        let s = Settings::decide(&never, &config, env(true));
        assert!(
            !s.color_stdout && !s.markdown,
            "the flag wins; the config's raw counts"
        );
        let quiet = UiArgs {
            quiet: true,
            ..Default::default()
        };
        let s = Settings::decide(&quiet, &UiConfig::default(), env(true));
        assert!(s.quiet && !s.animate);
    }
}
