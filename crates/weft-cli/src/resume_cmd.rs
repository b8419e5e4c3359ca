//! `weft resume`: pick a session of this project from a searchable list
//! (type to filter by name, prompt text or id; arrow keys; Enter) and go on
//! with it in the interactive mode, as `weft continue` does with the newest.
//!
//! It owns the picker and nothing else: which sessions are listed is the
//! store's listing (top-level sessions, forks included), running the chosen
//! one is [`run::interactive`]'s. The picker is `inquire`'s `Select`.

use std::cmp::Reverse;
use std::fmt;
use std::io::IsTerminal;

use anyhow::{Context, bail};
use inquire::{InquireError, Select};
use weft_core::session::SessionMeta;
use weft_core::store::{ListCursor, ListFilter, ListQuery};

use crate::app::App;
use crate::run::{self, RunOptions};
use crate::session_cmd::{local_time, truncate};

/// How many of the project's newest sessions the picker offers at most.
const MAX_CHOICES: usize = 2000;

/// What to run instead when there is no terminal to pick in.
const NOT_A_TERMINAL: &str = "`weft resume` picks a session interactively and needs a terminal: run `weft session list` to see the sessions, then `weft session resume ID`";

/// One session in the picker.
struct Choice {
    meta: SessionMeta,
    /// How many characters the name and prompt get.
    width: usize,
    /// What the filter searches, lowercased: id, name, description, last
    /// prompt.
    haystack: String,
}

impl Choice {
    fn new(meta: SessionMeta, width: usize) -> Self {
        let haystack = [
            Some(meta.id.as_str()),
            meta.name.as_deref(),
            meta.description.as_deref(),
            meta.last_prompt.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
        Self {
            meta,
            width,
            haystack,
        }
    }

    /// Whether every word of `filter` occurs in the session's id, name,
    /// description or last prompt (case-insensitive).
    fn matches(&self, filter: &str) -> bool {
        filter
            .to_lowercase()
            .split_whitespace()
            .all(|word| self.haystack.contains(word))
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prompt = self.meta.last_prompt.as_deref().unwrap_or("");
        let fork = if self.meta.forked_from.is_some() {
            "(fork) "
        } else {
            ""
        };
        let about = match &self.meta.name {
            Some(name) => format!("{fork}{name}: {prompt}"),
            None => format!("{fork}{prompt}"),
        };
        write!(
            f,
            "{}  {:>3} turn(s)  {:<width$}  {}",
            local_time(&self.meta.updated_at),
            self.meta.turn_count,
            truncate(&about, self.width),
            self.meta.id,
            width = self.width
        )
    }
}

/// The width of the name-and-prompt column: what the terminal leaves
/// beside the time, the turns and the full id (20 to 80 characters).
fn about_width() -> usize {
    // "> ", time, turns, id and the gaps between them.
    const FIXED: usize = 2 + 16 + 2 + 11 + 2 + 2 + 36;
    let cols = crossterm::terminal::size().map_or(100, |(c, _)| c as usize);
    cols.saturating_sub(FIXED).clamp(20, 80)
}

/// The project's top-level sessions, newest first (at most
/// [`MAX_CHOICES`]).
async fn choices(app: &App) -> anyhow::Result<Vec<Choice>> {
    let width = about_width();
    let mut out = Vec::new();
    let mut cursor: Option<ListCursor> = None;
    loop {
        let page = app
            .store
            .list(&ListQuery {
                filter: ListFilter {
                    project: Some(app.project.slug.clone()),
                    top_level_only: true,
                    ..Default::default()
                },
                cursor,
                limit: 500,
            })
            .await?;
        out.extend(page.sessions.into_iter().map(|m| Choice::new(m, width)));
        match page.next_cursor {
            Some(c) if out.len() < MAX_CHOICES => cursor = Some(c),
            _ => break,
        }
    }
    out.truncate(MAX_CHOICES);
    Ok(out)
}

/// `weft resume`.
pub async fn resume(app: &App, opts: RunOptions) -> anyhow::Result<()> {
    if !(std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal())
    {
        bail!(NOT_A_TERMINAL);
    }
    let options = choices(app).await?;
    if options.is_empty() {
        bail!(
            "no sessions to resume in {}: start one with `weft run \"prompt\"`",
            app.project.dir
        );
    }
    let scorer = |input: &str, choice: &Choice, _shown: &str, _index: usize| {
        choice.matches(input).then_some(0)
    };
    // Equal scores keep the listing's order: newest first.
    let sorter = |scored: &mut [(usize, i64)]| {
        scored.sort_by_key(|&(index, score)| (Reverse(score), index));
    };
    let picked = tokio::task::block_in_place(|| {
        Select::new("resume which session?", options)
            .with_help_message(
                "type to filter by name, prompt or id; ↑↓ to move, Enter to resume, Esc to quit",
            )
            .with_page_size(15)
            .with_scorer(&scorer)
            .with_sorter(&sorter)
            .prompt()
    });
    let choice = match picked {
        Ok(choice) => choice,
        Err(InquireError::OperationCanceled | InquireError::OperationInterrupted) => {
            eprintln!("nothing resumed");
            return Ok(());
        }
        Err(InquireError::NotTTY) => bail!(NOT_A_TERMINAL),
        Err(e) => return Err(e).context("cannot show the session list"),
    };
    run::interactive(app, opts, Some(choice.meta.id)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::SessionId;
    use weft_core::session::Project;

    fn choice(id: &str, name: Option<&str>, prompt: Option<&str>) -> Choice {
        let mut meta = SessionMeta::new(
            SessionId::parse(id).expect("id"),
            Project::from_dir(std::path::Path::new("/tmp/p")),
            "dev",
        );
        meta.name = name.map(str::to_string);
        meta.last_prompt = prompt.map(str::to_string);
        Choice::new(meta, 60)
    }

    #[test]
    fn the_filter_searches_id_name_and_prompt_by_words() {
        let c = choice(
            "0190abcd-0000-7000-8000-000000000001",
            Some("Fruit talk"),
            Some("tell me about PEARS please"),
        );
        assert!(c.matches(""));
        assert!(c.matches("0190ab"));
        assert!(c.matches("fruit"));
        assert!(c.matches("pears fruit"), "every word, in any field");
        assert!(c.matches("Pears"), "case-insensitive");
        assert!(!c.matches("apples"));
        assert!(!c.matches("pears apples"), "all words must match");
        let bare = choice("0190abcd-0000-7000-8000-000000000002", None, None);
        assert!(!bare.matches("pears"));
        assert!(
            bare.to_string()
                .contains("0190abcd-0000-7000-8000-000000000002")
        );
        assert!(c.to_string().contains("Fruit talk: tell me about PEARS"));
    }
}
