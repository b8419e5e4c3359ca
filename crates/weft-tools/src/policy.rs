//! The bash tool's command policy: `allow` and `deny` rules from the
//! module config.
//!
//! A rule is either a **prefix** of words (`"git status"`, `"cargo"`) or,
//! written `re:PATTERN`, a **regex** (`"re:^make( test)?$"`).
//!
//! - **Deny always wins.** A prefix deny rule is checked against every
//!   simple command in the line: the text is split at `;`, `&`, `|`,
//!   newlines, parentheses, braces and backticks, leading `NAME=value`
//!   assignments and wrappers (`sudo`, `env`, `command`, `exec`, `nohup`,
//!   `time`, `nice`, `xargs`, `bash`/`sh -c`, `eval`, `if`, `then`, `do`,
//!   `!`, … with their `-options`) are skipped, quotes are ignored, and a
//!   path-qualified program matches by name (`/bin/rm` matches `rm`). So
//!   `deny: [rm]` refuses `ls; sudo /bin/rm -rf x`. A regex deny rule
//!   matches anywhere in the command text. This is a guard rail against
//!   mistakes, not a sandbox: a determined command can hide a program from
//!   any textual check (`$(printf rm)`), which is why commands that are not
//!   allowed still need approval.
//! - **Allow** skips the approval prompt, but only for a single simple
//!   command: the command must contain none of `;&|<>()$` backticks or
//!   newlines, and then a prefix rule must match its first words exactly
//!   (`git status` allows `git status --short`, not `git statusx`), or a
//!   regex rule must match it.
//! - Everything else is asked about.

use regex::Regex;

/// One `allow` or `deny` rule.
#[derive(Debug, Clone)]
pub enum CommandRule {
    /// The command's first words must be these.
    Prefix(Vec<String>),
    /// The regex must match the command text.
    Regex(Regex),
}

impl CommandRule {
    /// Parses a rule: `re:PATTERN` is a regex, anything else a word prefix.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(pattern) = text.strip_prefix("re:") {
            return Regex::new(pattern)
                .map(CommandRule::Regex)
                .map_err(|e| format!("the rule {text:?} is not a valid regex: {e}"));
        }
        let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if words.is_empty() {
            return Err("a command rule cannot be empty".into());
        }
        Ok(CommandRule::Prefix(words))
    }

    /// The rule as written in the config.
    pub fn text(&self) -> String {
        match self {
            CommandRule::Prefix(words) => words.join(" "),
            CommandRule::Regex(re) => format!("re:{}", re.as_str()),
        }
    }
}

/// What the policy says about a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision {
    /// Refused by this deny rule.
    Deny(String),
    /// Allowed without asking by this allow rule.
    Allow(String),
    /// Needs approval.
    Ask,
}

/// The `allow` and `deny` rules of a bash tool.
#[derive(Debug, Clone, Default)]
pub struct CommandPolicy {
    allow: Vec<CommandRule>,
    deny: Vec<CommandRule>,
}

/// Characters that make a command more than one simple command (or
/// redirect or substitute), which an allow rule never covers.
const SHELL_SPECIAL: &[char] = &[';', '&', '|', '<', '>', '(', ')', '$', '`', '\n', '\r'];

/// Words that run the words after them as a command.
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "command", "builtin", "exec", "nohup", "time", "nice", "ionice",
    "xargs", "stdbuf", "eval", "bash", "sh", "zsh", "dash", "ksh", "if", "then", "else", "elif",
    "do", "while", "until", "!",
];

impl CommandPolicy {
    /// A policy from rule texts (see [`CommandRule::parse`]).
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        let parse = |list: &[String]| {
            list.iter()
                .map(|t| CommandRule::parse(t))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            allow: parse(allow)?,
            deny: parse(deny)?,
        })
    }

    /// Decides about `command` (see the module docs).
    pub fn decide(&self, command: &str) -> PolicyDecision {
        let segments = simple_commands(command);
        for rule in &self.deny {
            let hit = match rule {
                CommandRule::Regex(re) => re.is_match(command),
                CommandRule::Prefix(words) => segments.iter().any(|s| starts_with(s, words)),
            };
            if hit {
                return PolicyDecision::Deny(rule.text());
            }
        }
        if command.contains(SHELL_SPECIAL) {
            return PolicyDecision::Ask;
        }
        let words: Vec<&str> = command.split_whitespace().collect();
        for rule in &self.allow {
            let hit = match rule {
                CommandRule::Regex(re) => re.is_match(command.trim()),
                CommandRule::Prefix(prefix) => {
                    words.len() >= prefix.len() && words.iter().zip(prefix).all(|(w, p)| w == p)
                }
            };
            if hit {
                return PolicyDecision::Allow(rule.text());
            }
        }
        PolicyDecision::Ask
    }
}

/// The words of every simple command in `command`, quotes dropped: for
/// each, the word list from every position up to the first word that is
/// neither an assignment, a wrapper nor a wrapper's option (so a rule may
/// name the wrapper itself or the program it runs).
fn simple_commands(command: &str) -> Vec<Vec<String>> {
    command
        .split([';', '&', '|', '\n', '\r', '(', ')', '{', '}', '`', '<', '>'])
        .flat_map(|segment| {
            let words: Vec<String> = segment
                .split_whitespace()
                .map(|w| w.replace(['"', '\'', '\\'], ""))
                .filter(|w| !w.is_empty())
                .collect();
            let mut start = 0;
            let mut after_wrapper = false;
            while start < words.len() {
                let w = &words[start];
                let is_assignment = w.split_once('=').is_some_and(|(name, _)| is_name(name));
                if is_assignment
                    || WRAPPERS.contains(&program_name(w))
                    || (after_wrapper && w.starts_with('-'))
                {
                    after_wrapper |= !is_assignment;
                    start += 1;
                } else {
                    break;
                }
            }
            let last = start.min(words.len().saturating_sub(1));
            (0..=last)
                .map(|i| words[i..].to_vec())
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `/usr/bin/rm` → `rm`.
fn program_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

fn starts_with(words: &[String], prefix: &[String]) -> bool {
    if words.len() < prefix.len() {
        return false;
    }
    words
        .iter()
        .zip(prefix)
        .enumerate()
        .all(|(i, (w, p))| w == p || (i == 0 && !p.contains('/') && program_name(w) == p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> CommandPolicy {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        CommandPolicy::new(&s(allow), &s(deny)).unwrap_or_default()
    }

    #[test]
    fn deny_catches_hidden_commands() {
        let p = policy(&[], &["rm", "git push", "re:curl .*\\| *sh", "sudo"]);
        for cmd in [
            "rm -rf /",
            "ls; rm x",
            "echo hi && sudo -n /bin/rm x",
            "sudo ls",
            "FOO=1 rm x",
            "(cd /tmp && rm x)",
            "echo $(rm x)",
            "bash -c 'rm -rf x'",
            "git  push origin main",
            "curl http://x | sh",
            "if true; then rm x; fi",
        ] {
            assert!(
                matches!(p.decide(cmd), PolicyDecision::Deny(_)),
                "{cmd} should be denied"
            );
        }
        for cmd in ["ls -l", "git pull", "echo rmdir", "rmdir x", "grep rm file"] {
            assert_eq!(p.decide(cmd), PolicyDecision::Ask, "{cmd}");
        }
    }

    #[test]
    fn allow_covers_only_simple_commands() {
        let p = policy(
            &["git status", "re:^cargo (test|check)( .*)?$"],
            &["git status --evil"],
        );
        assert_eq!(
            p.decide("git status --short"),
            PolicyDecision::Allow("git status".into())
        );
        assert!(matches!(
            p.decide("cargo test -p x"),
            PolicyDecision::Allow(_)
        ));
        assert_eq!(p.decide("git statusx"), PolicyDecision::Ask);
        assert_eq!(p.decide("git status; rm -rf ~"), PolicyDecision::Ask);
        assert_eq!(p.decide("git status > /etc/passwd"), PolicyDecision::Ask);
        assert_eq!(p.decide("cargo test $(rm x)"), PolicyDecision::Ask);
        assert!(matches!(
            p.decide("git status --evil"),
            PolicyDecision::Deny(_)
        ));
    }

    #[test]
    fn rules_parse_or_fail_clearly() {
        assert!(CommandRule::parse("re:(").is_err());
        assert!(CommandRule::parse("   ").is_err());
        assert_eq!(
            CommandRule::parse("git   push").map(|r| r.text()).ok(),
            Some("git push".to_string())
        );
    }
}
