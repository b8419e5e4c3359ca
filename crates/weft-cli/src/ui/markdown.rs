//! Markdown rendering of assistant answers on a terminal: headings,
//! lists, emphasis, links, quotes, tables and fenced code blocks (syntax
//! highlighted with syntect's bundled syntaxes). [`MarkdownStream`] takes
//! the answer as it streams and renders each line once it is complete; a
//! code block or a table is rendered when it ends. Without colour the
//! layout stays (bullets, table borders, fences) and no escape sequence is
//! written. It knows nothing of sessions or where the text comes from.

use std::sync::OnceLock;

use pulldown_cmark::{Alignment, CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use syntect::easy::HighlightLines;
use syntect::highlighting::{Theme, ThemeSet};
use syntect::parsing::SyntaxSet;
use syntect::util::{LinesWithEndings, as_24_bit_terminal_escaped};

/// The block a stream is inside of, waiting for its end.
#[derive(Debug, Default)]
enum Block {
    /// None: each line renders alone.
    #[default]
    None,
    /// A fenced code block: its fence (the run of backticks or tildes) and
    /// its lines so far, the opening one included.
    Fence { fence: String, lines: Vec<String> },
    /// Table rows so far.
    Table(Vec<String>),
}

/// Renders an answer as it streams in: [`MarkdownStream::push`] each
/// delta, print what it returns, and [`MarkdownStream::finish`] at the
/// end (or before something else is printed).
#[derive(Debug)]
pub struct MarkdownStream {
    color: bool,
    width: usize,
    partial: String,
    block: Block,
}

impl MarkdownStream {
    /// A stream rendering for a terminal `width` columns wide, with
    /// colours when `color`.
    pub fn new(color: bool, width: usize) -> Self {
        Self {
            color,
            width,
            partial: String::new(),
            block: Block::None,
        }
    }

    /// Takes a delta; returns the rendering of the lines it completed.
    pub fn push(&mut self, delta: &str) -> String {
        self.partial.push_str(delta);
        let mut out = String::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            out.push_str(&self.line(line.trim_end_matches(['\n', '\r'])));
        }
        out
    }

    /// Whether text is held back (an unfinished line, code block or table).
    pub fn holds_text(&self) -> bool {
        !self.partial.is_empty() || !matches!(self.block, Block::None)
    }

    /// Renders whatever is held back: the last line, an unclosed block.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            out.push_str(&self.line(&line));
        }
        match std::mem::take(&mut self.block) {
            Block::None => {}
            Block::Fence { fence, mut lines } => {
                lines.push(fence);
                out.push_str(&self.render(&lines.join("\n")));
            }
            Block::Table(lines) => out.push_str(&self.render(&lines.join("\n"))),
        }
        out
    }

    /// One complete line (without its newline).
    fn line(&mut self, line: &str) -> String {
        match &mut self.block {
            Block::Fence { fence, lines } => {
                if closes(line, fence) {
                    lines.push(line.to_string());
                    let text = lines.join("\n");
                    self.block = Block::None;
                    return self.render(&text);
                }
                lines.push(line.to_string());
                return String::new();
            }
            Block::Table(lines) => {
                if line.trim_start().starts_with('|') {
                    lines.push(line.to_string());
                    return String::new();
                }
                let text = lines.join("\n");
                self.block = Block::None;
                let mut out = self.render(&text);
                out.push_str(&self.line(line));
                return out;
            }
            Block::None => {}
        }
        let trimmed = line.trim_start();
        if let Some(fence) = opens_fence(trimmed) {
            self.block = Block::Fence {
                fence,
                lines: vec![line.to_string()],
            };
            return String::new();
        }
        if trimmed.starts_with('|') {
            self.block = Block::Table(vec![line.to_string()]);
            return String::new();
        }
        if trimmed.is_empty() {
            return "\n".into();
        }
        // A line alone: indentation (nested lists) kept as it is.
        let indent = &line[..line.len() - trimmed.len()];
        format!("{indent}{}", self.render(trimmed))
    }

    fn render(&self, markdown: &str) -> String {
        render(markdown, self.color, self.width)
    }
}

/// The fence a line opens a code block with (three or more backticks or
/// tildes), if it does.
fn opens_fence(trimmed: &str) -> Option<String> {
    let c = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let run: String = trimmed.chars().take_while(|x| *x == c).collect();
    (run.len() >= 3).then_some(run)
}

/// Whether `line` closes a code block opened with `fence`.
fn closes(line: &str, fence: &str) -> bool {
    let t = line.trim();
    let Some(c) = fence.chars().next() else {
        return false;
    };
    t.len() >= fence.len() && t.chars().all(|x| x == c)
}

/// Renders a whole Markdown text for a terminal `width` columns wide.
pub fn render(markdown: &str, color: bool, width: usize) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let mut r = Renderer {
        color,
        width,
        ..Default::default()
    };
    for event in Parser::new_ext(markdown, options) {
        r.event(event);
    }
    r.ensure_newline();
    r.out
}

/// A table being collected: alignments, rows of (plain, styled) cells.
#[derive(Debug, Default)]
struct Table {
    align: Vec<Alignment>,
    rows: Vec<Vec<(String, String)>>,
    header_rows: usize,
}

#[derive(Debug, Default)]
struct Renderer {
    color: bool,
    width: usize,
    out: String,
    styles: Vec<&'static str>,
    lists: Vec<Option<u64>>,
    code: Option<(String, String)>,
    links: Vec<String>,
    table: Option<Table>,
    cell: Option<(String, String)>,
}

impl Renderer {
    fn write(&mut self, text: &str) {
        match &mut self.cell {
            Some((plain, styled)) => {
                plain.push_str(text);
                styled.push_str(text);
            }
            None => self.out.push_str(text),
        }
    }

    /// Escape sequences go only to the styled text.
    fn write_escape(&mut self, escape: &str) {
        if !self.color {
            return;
        }
        match &mut self.cell {
            Some((_, styled)) => styled.push_str(escape),
            None => self.out.push_str(escape),
        }
    }

    fn push_style(&mut self, code: &'static str) {
        self.styles.push(code);
        self.write_escape(&format!("\x1b[{code}m"));
    }

    fn pop_style(&mut self) {
        self.styles.pop();
        let mut escape = String::from("\x1b[0m");
        for code in &self.styles {
            escape.push_str(&format!("\x1b[{code}m"));
        }
        self.write_escape(&escape);
    }

    fn ensure_newline(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    fn dim(&self, text: &str) -> String {
        super::paint(text, "2", self.color)
    }

    fn event(&mut self, event: Event<'_>) {
        if let Some((_, code)) = &mut self.code {
            match event {
                Event::Text(text) => code.push_str(&text),
                Event::End(TagEnd::CodeBlock) => {
                    if let Some((lang, code)) = self.code.take() {
                        self.code_block(&lang, &code);
                    }
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) | Event::Html(text) | Event::InlineHtml(text) => self.write(&text),
            Event::Code(text) => {
                self.push_style("36");
                self.write(&text);
                self.pop_style();
            }
            Event::SoftBreak => self.write(" "),
            Event::HardBreak => self.write("\n"),
            Event::Rule => {
                self.ensure_newline();
                let rule = "─".repeat(self.width.clamp(3, 80));
                let rule = self.dim(&rule);
                self.out.push_str(&rule);
                self.out.push('\n');
            }
            Event::TaskListMarker(done) => self.write(if done { "[x] " } else { "[ ] " }),
            Event::FootnoteReference(name) => self.write(&format!("[^{name}]")),
            Event::InlineMath(text) | Event::DisplayMath(text) => self.write(&text),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { level, .. } => {
                self.ensure_newline();
                let level = level as usize;
                if self.color {
                    self.push_style(if level == 1 { "1;4" } else { "1" });
                } else {
                    self.push_style("");
                    self.write(&format!("{} ", "#".repeat(level)));
                }
            }
            Tag::BlockQuote(_) => {
                let bar = self.dim("│ ");
                self.out.push_str(&bar);
            }
            Tag::CodeBlock(kind) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().unwrap_or("").to_string()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                self.code = Some((lang, String::new()));
            }
            Tag::List(start) => {
                self.ensure_newline();
                self.lists.push(start);
            }
            Tag::Item => {
                self.ensure_newline();
                let depth = self.lists.len().saturating_sub(1);
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "• ".to_string(),
                };
                self.out.push_str(&"  ".repeat(depth));
                self.out.push_str(&marker);
            }
            Tag::Emphasis => self.push_style("3"),
            Tag::Strong => self.push_style("1"),
            Tag::Strikethrough => self.push_style("9"),
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                self.links.push(dest_url.to_string());
                self.push_style("4;34");
            }
            Tag::Table(align) => {
                self.ensure_newline();
                self.table = Some(Table {
                    align,
                    ..Default::default()
                });
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(t) = &mut self.table {
                    t.rows.push(Vec::new());
                }
            }
            Tag::TableCell => self.cell = Some((String::new(), String::new())),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => {
                self.pop_style();
                self.out.push('\n');
            }
            TagEnd::Paragraph | TagEnd::Item => self.ensure_newline(),
            TagEnd::List(_) => {
                self.lists.pop();
                self.ensure_newline();
            }
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough => self.pop_style(),
            TagEnd::Link | TagEnd::Image => {
                self.pop_style();
                if let Some(url) = self.links.pop() {
                    let shown = match &self.cell {
                        Some((plain, _)) => plain.ends_with(url.as_str()),
                        None => self.out.ends_with(url.as_str()),
                    };
                    if !shown && !url.is_empty() {
                        let url = format!(" ({url})");
                        let dimmed = self.dim(&url);
                        match &mut self.cell {
                            Some((plain, styled)) => {
                                plain.push_str(&url);
                                styled.push_str(&dimmed);
                            }
                            None => self.out.push_str(&dimmed),
                        }
                    }
                }
            }
            TagEnd::TableHead => {
                if let Some(t) = &mut self.table {
                    t.header_rows = t.rows.len();
                }
            }
            TagEnd::TableCell => {
                if let (Some(cell), Some(t)) = (self.cell.take(), &mut self.table)
                    && let Some(row) = t.rows.last_mut()
                {
                    row.push(cell);
                }
            }
            TagEnd::Table => {
                if let Some(t) = self.table.take() {
                    let text = table(&t, self.color);
                    self.out.push_str(&text);
                }
            }
            _ => {}
        }
    }

    fn code_block(&mut self, lang: &str, code: &str) {
        self.ensure_newline();
        let open = self.dim(&format!("```{lang}"));
        self.out.push_str(&open);
        self.out.push('\n');
        if self.color {
            self.out.push_str(&highlight(lang, code));
        } else {
            self.out.push_str(code);
        }
        self.ensure_newline();
        let close = self.dim("```");
        self.out.push_str(&close);
        self.out.push('\n');
    }
}

/// A table drawn with box characters, cells padded to their column.
fn table(t: &Table, color: bool) -> String {
    let columns = t.rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            t.rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|(plain, _)| plain.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let border = |l: &str, m: &str, r: &str| {
        let parts: Vec<String> = widths.iter().map(|w| "─".repeat(w + 2)).collect();
        let line = format!("{l}{}{r}", parts.join(m));
        format!("{}\n", super::paint(&line, "2", color))
    };
    let bar = super::paint("│", "2", color);
    let mut out = border("┌", "┬", "┐");
    for (i, row) in t.rows.iter().enumerate() {
        if i == t.header_rows && i > 0 {
            out.push_str(&border("├", "┼", "┤"));
        }
        out.push_str(&bar);
        for (c, width) in widths.iter().enumerate() {
            let (plain, styled) = row.get(c).cloned().unwrap_or_default();
            let pad = width - plain.chars().count();
            let (left, right) = match t.align.get(c) {
                Some(Alignment::Right) => (pad, 0),
                Some(Alignment::Center) => (pad / 2, pad - pad / 2),
                _ => (0, pad),
            };
            let text = if i < t.header_rows {
                super::paint(&styled, "1", color)
            } else {
                styled
            };
            out.push_str(&format!(
                " {}{text}{} {bar}",
                " ".repeat(left),
                " ".repeat(right)
            ));
        }
        out.push('\n');
    }
    out.push_str(&border("└", "┴", "┘"));
    out
}

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

fn theme() -> Option<&'static Theme> {
    static THEMES: OnceLock<ThemeSet> = OnceLock::new();
    THEMES
        .get_or_init(ThemeSet::load_defaults)
        .themes
        .get("base16-ocean.dark")
}

/// `code` with 24-bit colour escapes for the language `lang` (plain text
/// when the language is unknown).
fn highlight(lang: &str, code: &str) -> String {
    let set = syntaxes();
    let syntax = set
        .find_syntax_by_token(lang)
        .unwrap_or_else(|| set.find_syntax_plain_text());
    let Some(theme) = theme() else {
        return code.to_string();
    };
    let mut lines = HighlightLines::new(syntax, theme);
    let mut out = String::new();
    for line in LinesWithEndings::from(code) {
        match lines.highlight_line(line, set) {
            Ok(ranges) => {
                let text = as_24_bit_terminal_escaped(&ranges, false);
                out.push_str(text.trim_end_matches('\n'));
                out.push_str("\x1b[0m");
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            Err(_) => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(markdown: &str) -> String {
        let mut s = MarkdownStream::new(false, 40);
        let mut out = s.push(markdown);
        out.push_str(&s.finish());
        out
    }

    #[test]
    fn lines_render_as_they_complete() {
        let mut s = MarkdownStream::new(false, 40);
        assert_eq!(s.push("# Tit"), "");
        assert_eq!(s.push("le\n- one"), "# Title\n");
        assert!(s.holds_text());
        assert_eq!(s.push("\n"), "• one\n");
        assert_eq!(s.push("2. two\n"), "2. two\n");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn plain_layout_without_colour() {
        let out = plain("Some *soft* and **bold** `code`, [a link](http://x.test).\n\n> quoted\n");
        assert_eq!(
            out,
            "Some soft and bold code, a link (http://x.test).\n\n│ quoted\n"
        );
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn code_blocks_render_when_they_close() {
        let mut s = MarkdownStream::new(true, 40);
        assert_eq!(s.push("```rust\nfn main() {}\n"), "");
        let out = s.push("```\nafter\n");
        assert!(out.starts_with("\x1b[2m```rust\x1b[0m\n"), "{out:?}");
        assert!(out.contains("\x1b[38;2;"), "highlighted: {out:?}");
        assert!(out.contains("main"));
        assert!(out.ends_with("\x1b[2m```\x1b[0m\nafter\n"), "{out:?}");
        assert_eq!(
            plain("```\nlet x = 1;\n"),
            "```\nlet x = 1;\n```\n",
            "an unclosed block is shown at the end"
        );
    }

    #[test]
    fn tables_are_drawn() {
        let out = plain("| name | n |\n|---|--:|\n| apples | 3 |\n| kiwis | 12 |\nafter\n");
        assert_eq!(
            out,
            "┌────────┬────┐\n│ name   │  n │\n├────────┼────┤\n│ apples │  3 │\n│ kiwis  │ 12 │\n└────────┴────┘\nafter\n"
        );
    }

    #[test]
    fn styles_nest_and_reset() {
        let out = render("**bold *both* bold**", true, 40);
        assert_eq!(out, "\x1b[1mbold \x1b[3mboth\x1b[0m\x1b[1m bold\x1b[0m\n");
    }
}
