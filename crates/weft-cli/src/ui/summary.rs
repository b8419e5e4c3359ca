//! The one-line summary printed on stderr after each turn: tokens in and
//! out (cached ones when the provider reports them), tool calls, wall time,
//! and the cost when the model's prices are configured (`[pricing]` in
//! config.toml; weft ships no price list, which would go stale). It knows
//! nothing of sessions: the printer feeds it usage and counts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use weft_core::message::Usage;

/// One model's prices in US dollars per million tokens
/// (`[pricing."model-name"]` in config.toml).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Input (prompt) tokens not served from a cache.
    pub input: f64,
    /// Output (completion) tokens.
    pub output: f64,
    /// Input tokens read from the provider's cache (default: `input`).
    #[serde(default)]
    pub cached: Option<f64>,
    /// Input tokens written to the provider's cache (default: `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
}

/// The `[pricing]` table: prices by model name.
pub type Pricing = BTreeMap<String, ModelPrice>;

impl ModelPrice {
    /// What `usage` costs, in US dollars.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
        per(usage.input_tokens, self.input)
            + per(usage.output_tokens, self.output)
            + per(usage.cache_read_tokens, self.cached.unwrap_or(self.input))
            + per(
                usage.cache_creation_tokens,
                self.cache_write.unwrap_or(self.input),
            )
    }

    /// Whether every price is a finite, non-negative number.
    pub fn is_valid(&self) -> bool {
        [
            Some(self.input),
            Some(self.output),
            self.cached,
            self.cache_write,
        ]
        .into_iter()
        .flatten()
        .all(|p| p.is_finite() && p >= 0.0)
    }
}

/// What one turn used, gathered as it runs.
#[derive(Debug, Clone, Default)]
pub struct TurnStats {
    /// Tokens, summed over the turn's model calls.
    pub usage: Usage,
    /// The model that answered (the last one named).
    pub model: Option<String>,
    /// Tool calls made.
    pub tool_calls: u64,
    /// Model calls that reported usage.
    pub model_calls: u64,
}

impl TurnStats {
    /// A model call's usage (and model) reported.
    pub fn add_response(&mut self, usage: &Usage, model: Option<&str>) {
        self.usage.add(usage);
        self.model_calls += 1;
        if let Some(model) = model {
            self.model = Some(model.to_string());
        }
    }

    /// The summary line for a turn that took `wall`, priced from `pricing`
    /// when it has the model.
    pub fn line(&self, wall: Duration, pricing: &Pricing) -> String {
        let u = &self.usage;
        let mut parts = Vec::new();
        let cached = if u.cache_read_tokens > 0 {
            format!(" ({} cached)", count(u.cache_read_tokens))
        } else {
            String::new()
        };
        parts.push(format!(
            "{} in{cached} / {} out tokens",
            count(u.input_tokens + u.cache_read_tokens + u.cache_creation_tokens),
            count(u.output_tokens)
        ));
        parts.push(match self.tool_calls {
            1 => "1 tool call".to_string(),
            n => format!("{n} tool calls"),
        });
        parts.push(format!("{:.1}s", wall.as_secs_f64()));
        if let Some(price) = self.model.as_ref().and_then(|m| pricing.get(m)) {
            parts.push(format!("${:.4}", price.cost(u)));
        }
        parts.join(" · ")
    }
}

/// `n` with thousands separators.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, cached: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cached,
            cache_creation_tokens: 0,
        }
    }

    #[test]
    fn the_line_counts_tokens_tools_and_time() {
        let mut stats = TurnStats::default();
        stats.add_response(&usage(1200, 30, 0), Some("m"));
        stats.add_response(&usage(1300, 12, 0), Some("m"));
        stats.tool_calls = 1;
        assert_eq!(
            stats.line(Duration::from_millis(2345), &Pricing::new()),
            "2,500 in / 42 out tokens · 1 tool call · 2.3s"
        );
    }

    #[test]
    fn cached_tokens_and_cost_when_priced() {
        let mut stats = TurnStats::default();
        stats.add_response(&usage(1_000_000, 100_000, 2_000_000), Some("big"));
        let mut pricing = Pricing::new();
        let price = ModelPrice {
            input: 3.0,
            output: 15.0,
            cached: Some(0.3),
            cache_write: None,
        };
        assert!(price.is_valid());
        pricing.insert("big".into(), price);
        assert_eq!(
            stats.line(Duration::from_secs(1), &pricing),
            "3,000,000 in (2,000,000 cached) / 100,000 out tokens · 0 tool calls · 1.0s · $5.1000"
        );
        pricing.clear();
        pricing.insert("other".into(), price);
        assert!(!stats.line(Duration::ZERO, &pricing).contains('$'));
    }

    #[test]
    fn negative_prices_are_not_valid() {
        let price = ModelPrice {
            input: -1.0,
            output: 1.0,
            cached: None,
            cache_write: None,
        };
        assert!(!price.is_valid());
    }
}
