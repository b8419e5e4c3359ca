//! Hand-written deserialisers for the hot shapes of the session log: the
//! [`ContentBlock`] of every message and the timestamps of every record.
//!
//! Loading a log parses every record, so these shapes decide how fast a
//! session loads. The derived forms cost more than they need to:
//!
//! - `ContentBlock` is an internally tagged enum (`{"type":"text",…}`);
//!   serde's derived form buffers every block into an intermediate tree
//!   before it knows the variant. Our writer always puts `type` first, so
//!   [`ContentBlock`]'s deserialiser reads the tag, then the variant's
//!   fields straight from the input. A block whose first key is not `type`
//!   (written by hand or by another tool), or a block written as a
//!   sequence, goes through the derived form unchanged, so every input
//!   that parsed before parses the same.
//! - chrono parses RFC 3339 with a general format interpreter;
//!   [`timestamp`] reads the shape chrono writes
//!   (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`) directly and hands anything else
//!   to chrono.
//!
//! Serialisation is untouched (derived): the JSON written stays the same.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::message::{ContentBlock, ImageSource};

/// Deserialises a `DateTime<Utc>` exactly as chrono's own `Deserialize`
/// does (any RFC 3339 date-time, converted to UTC), reading the shape
/// chrono writes without its format interpreter.
pub fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    struct TsVisitor;
    impl Visitor<'_> for TsVisitor {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if let Some(t) = parse_utc_fast(s) {
                return Ok(t);
            }
            s.parse::<DateTime<FixedOffset>>()
                .map(|t| t.with_timezone(&Utc))
                .map_err(E::custom)
        }
    }
    d.deserialize_str(TsVisitor)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+00:00)`, the shape chrono
/// writes for a UTC time; None for anything else (including leap seconds
/// and out-of-range fields), which the caller hands to chrono.
fn parse_utc_fast(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let (month, day) = (num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if sec >= 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(start..i)? * 10u32.pow(9 - digits as u32);
    }
    match &b[i..] {
        b"Z" | b"+00:00" => {}
        _ => return None,
    }
    let t = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(hour, min, sec, nanos)?;
    Some(t.and_utc())
}

/// The `type` of a content block.
#[derive(Deserialize)]
#[serde(variant_identifier, rename_all = "snake_case")]
enum Tag {
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    Image,
}

// The fields of each variant. `type` appearing again after the tag is
// caught (`dup`) and refused, as the derived form refuses it.

#[derive(Deserialize)]
struct TextFields {
    text: String,
    #[serde(default, rename = "type")]
    dup: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ThinkingFields {
    thinking: String,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default, rename = "type")]
    dup: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ToolCallFields {
    id: String,
    name: String,
    arguments: Value,
    #[serde(default, rename = "type")]
    dup: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ToolResultFields {
    call_id: String,
    output: String,
    #[serde(default)]
    is_error: bool,
    #[serde(default, rename = "type")]
    dup: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ImageFields {
    source: ImageSource,
    #[serde(default, rename = "type")]
    dup: Option<IgnoredAny>,
}

/// The derived (buffering) form, for blocks whose first key is not `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DerivedBlock {
    Text(TextFields),
    Thinking(ThinkingFields),
    ToolCall(ToolCallFields),
    ToolResult(ToolResultFields),
    Image(ImageFields),
}

impl From<DerivedBlock> for ContentBlock {
    fn from(b: DerivedBlock) -> Self {
        match b {
            DerivedBlock::Text(f) => ContentBlock::Text { text: f.text },
            DerivedBlock::Thinking(f) => ContentBlock::Thinking {
                thinking: f.thinking,
                signature: f.signature,
            },
            DerivedBlock::ToolCall(f) => ContentBlock::ToolCall {
                id: f.id,
                name: f.name,
                arguments: f.arguments,
            },
            DerivedBlock::ToolResult(f) => ContentBlock::ToolResult {
                call_id: f.call_id,
                output: f.output,
                is_error: f.is_error,
            },
            DerivedBlock::Image(f) => ContentBlock::Image { source: f.source },
        }
    }
}

/// A block's first key: the tag, or another key (kept to replay it).
enum FirstKey {
    Tag,
    Other(String),
}

impl<'de> Deserialize<'de> for FirstKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = FirstKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FirstKey, E> {
                Ok(if s == "type" {
                    FirstKey::Tag
                } else {
                    FirstKey::Other(s.to_string())
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// A map whose first key was already read: yields that key again, then
/// the rest of the map.
struct Replay<A> {
    first: Option<String>,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Replay<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.first.take() {
            Some(key) => seed
                .deserialize(StringDeserializer::<A::Error>::new(key))
                .map(Some),
            None => self.map.next_key_seed(seed),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
    fn size_hint(&self) -> Option<usize> {
        self.map
            .size_hint()
            .map(|n| n + usize::from(self.first.is_some()))
    }
}

fn no_dup<E: de::Error>(dup: &Option<IgnoredAny>) -> Result<(), E> {
    match dup {
        Some(_) => Err(E::duplicate_field("type")),
        None => Ok(()),
    }
}

struct BlockVisitor;

impl<'de> Visitor<'de> for BlockVisitor {
    type Value = ContentBlock;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("internally tagged enum ContentBlock")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentBlock, A::Error> {
        let tag = match map.next_key::<FirstKey>()? {
            None => return Err(de::Error::missing_field("type")),
            Some(FirstKey::Other(key)) => {
                let replay = Replay {
                    first: Some(key),
                    map,
                };
                return DerivedBlock::deserialize(MapAccessDeserializer::new(replay))
                    .map(Into::into);
            }
            Some(FirstKey::Tag) => map.next_value::<Tag>()?,
        };
        let rest = MapAccessDeserializer::new(map);
        Ok(match tag {
            Tag::Text => {
                let f = TextFields::deserialize(rest)?;
                no_dup(&f.dup)?;
                ContentBlock::Text { text: f.text }
            }
            Tag::Thinking => {
                let f = ThinkingFields::deserialize(rest)?;
                no_dup(&f.dup)?;
                ContentBlock::Thinking {
                    thinking: f.thinking,
                    signature: f.signature,
                }
            }
            Tag::ToolCall => {
                let f = ToolCallFields::deserialize(rest)?;
                no_dup(&f.dup)?;
                ContentBlock::ToolCall {
                    id: f.id,
                    name: f.name,
                    arguments: f.arguments,
                }
            }
            Tag::ToolResult => {
                let f = ToolResultFields::deserialize(rest)?;
                no_dup(&f.dup)?;
                ContentBlock::ToolResult {
                    call_id: f.call_id,
                    output: f.output,
                    is_error: f.is_error,
                }
            }
            Tag::Image => {
                let f = ImageFields::deserialize(rest)?;
                no_dup(&f.dup)?;
                ContentBlock::Image { source: f.source }
            }
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ContentBlock, A::Error> {
        DerivedBlock::deserialize(SeqAccessDeserializer::new(seq)).map(Into::into)
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BlockVisitor)
    }
}

#[cfg(test)]
#[path = "wire_de_tests.rs"]
mod tests;
