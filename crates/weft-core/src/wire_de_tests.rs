//! The hand-written deserialisers against the derived ones they replace:
//! same value for every input that parses, an error for every input that
//! does not, whatever the key order and with unknown keys.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::message::{ContentBlock, ImageSource};

/// `ContentBlock` as it was declared before `wire_de` (derived).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OldBlock {
    Text {
        text: String,
    },
    Thinking {
        thinking: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    ToolCall {
        id: String,
        name: String,
        arguments: Value,
    },
    ToolResult {
        call_id: String,
        output: String,
        #[serde(default)]
        is_error: bool,
    },
    Image {
        source: ImageSource,
    },
}

impl From<OldBlock> for ContentBlock {
    fn from(b: OldBlock) -> Self {
        match b {
            OldBlock::Text { text } => ContentBlock::Text { text },
            OldBlock::Thinking {
                thinking,
                signature,
            } => ContentBlock::Thinking {
                thinking,
                signature,
            },
            OldBlock::ToolCall {
                id,
                name,
                arguments,
            } => ContentBlock::ToolCall {
                id,
                name,
                arguments,
            },
            OldBlock::ToolResult {
                call_id,
                output,
                is_error,
            } => ContentBlock::ToolResult {
                call_id,
                output,
                is_error,
            },
            OldBlock::Image { source } => ContentBlock::Image { source },
        }
    }
}

/// Parses `json` both ways (text, and through a `Value`) and checks they
/// agree; returns the new parse.
fn agree(json: &str) -> Result<Option<ContentBlock>, TestCaseError> {
    let new = serde_json::from_str::<ContentBlock>(json);
    let old = serde_json::from_str::<OldBlock>(json).map(ContentBlock::from);
    match (&new, &old) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "{}", json),
        (Err(_), Err(_)) => {}
        _ => prop_assert!(false, "{json}: new {new:?}, derived {old:?}"),
    }
    if let Ok(value) = serde_json::from_str::<Value>(json) {
        let new_v = serde_json::from_value::<ContentBlock>(value.clone());
        let old_v = serde_json::from_value::<OldBlock>(value).map(ContentBlock::from);
        prop_assert_eq!(new_v.ok(), old_v.ok(), "from a Value: {}", json);
    }
    Ok(new.ok())
}

#[test]
fn edge_cases_parse_as_the_derived_form_does() {
    let cases = [
        r#"{"type":"text","text":"hi"}"#,
        r#"{"text":"hi","type":"text"}"#,
        r#"{"text":"hi","type":"text","more":1}"#,
        r#"{"type":"text","x":{"y":[1,2]},"text":"hi"}"#,
        r#"{"type":"text"}"#,
        r#"{"text":"hi"}"#,
        r#"{}"#,
        r#"{"type":"text","text":"a","type":"text"}"#,
        r#"{"text":"a","type":"text","type":"text"}"#,
        r#"{"type":"text","text":"a","text":"b"}"#,
        r#"{"type":"nope","text":"a"}"#,
        r#"{"type":1,"text":"a"}"#,
        r#"{"type":null,"text":"a"}"#,
        r#"{"type":"text","text":5}"#,
        r#"["text","hi"]"#,
        r#"["text",{"text":"hi"}]"#,
        r#""text""#,
        r#"null"#,
        r#"{"type":"thinking","thinking":"t"}"#,
        r#"{"type":"thinking","thinking":"t","signature":null}"#,
        r#"{"signature":"s","thinking":"t","type":"thinking"}"#,
        r#"{"type":"tool_call","id":"c","name":"n","arguments":{"a":[1,{"b":null}]}}"#,
        r#"{"type":"tool_call","id":"c","name":"n"}"#,
        r#"{"arguments":null,"id":"c","type":"tool_call","name":"n"}"#,
        r#"{"type":"tool_result","call_id":"c","output":"o"}"#,
        r#"{"type":"tool_result","call_id":"c","output":"o","is_error":true}"#,
        r#"{"is_error":"yes","type":"tool_result","call_id":"c","output":"o"}"#,
        r#"{"type":"image","source":{"kind":"url","url":"http://x"}}"#,
        r#"{"source":{"url":"u","kind":"url"},"type":"image"}"#,
        r#"{"type":"image","source":{"kind":"base64","media_type":"image/png","data":"AA=="}}"#,
        r#"{"type":"image","source":{"kind":"file"}}"#,
        r#"{"type":"text","text":"esc \"q\" \u00e9 \n"}"#,
    ];
    for json in cases {
        agree(json).unwrap_or_else(|e| panic!("{e}"));
    }
    // The ones that must parse do.
    assert!(matches!(
        agree(r#"{"text":"hi","type":"text","more":1}"#),
        Ok(Some(ContentBlock::Text { .. }))
    ));
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,12}",
        "\\PC{0,8}",
        Just("quote \" backslash \\ newline \n".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The key/value pairs of a block's JSON (values as JSON text), without
/// the tag, and its tag; some optional fields left out.
fn block_fields() -> impl Strategy<Value = (&'static str, Vec<(String, String)>)> {
    let s = |v: &str| serde_json::to_string(v).unwrap_or_default();
    prop_oneof![
        text().prop_map(move |t| ("text", vec![("text".into(), s(&t))])),
        (text(), prop::option::of(text())).prop_map(move |(t, sig)| {
            let mut f = vec![("thinking".into(), s(&t))];
            if let Some(sig) = sig {
                f.push(("signature".into(), s(&sig)));
            }
            ("thinking", f)
        }),
        (text(), text(), json_value()).prop_map(move |(id, name, args)| {
            (
                "tool_call",
                vec![
                    ("id".into(), s(&id)),
                    ("name".into(), s(&name)),
                    ("arguments".into(), args.to_string()),
                ],
            )
        }),
        (text(), text(), prop::option::of(any::<bool>())).prop_map(move |(c, o, e)| {
            let mut f = vec![("call_id".into(), s(&c)), ("output".into(), s(&o))];
            if let Some(e) = e {
                f.push(("is_error".into(), e.to_string()));
            }
            ("tool_result", f)
        }),
        text().prop_map(move |u| {
            let src = format!(r#"{{"kind":"url","url":{}}}"#, s(&u));
            ("image", vec![("source".into(), src)])
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_order_and_unknown_keys_parse_as_the_derived_form_does(
        (tag, mut fields) in block_fields(),
        unknown in prop::collection::vec(("[a-z_]{1,6}", json_value()), 0..3),
        tag_at in any::<prop::sample::Index>(),
        shuffle in any::<u64>(),
        drop_one in prop::option::of(any::<prop::sample::Index>()),
    ) {
        for (k, v) in unknown {
            if k != "type" {
                fields.push((k, v.to_string()));
            }
        }
        // A deterministic shuffle, then the tag somewhere (first, often).
        let mut seed = shuffle | 1;
        for i in (1..fields.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            fields.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        if let Some(d) = drop_one {
            let i = d.index(fields.len());
            fields.remove(i);
        }
        let at = if shuffle % 2 == 0 { 0 } else { tag_at.index(fields.len() + 1) };
        fields.insert(at, ("type".into(), format!("\"{tag}\"")));
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap_or_default(), v))
            .collect();
        let json = format!("{{{}}}", body.join(","));
        let parsed = agree(&json)?;
        if let Some(block) = parsed {
            // And it writes the same JSON it would have written before.
            let again = serde_json::to_string(&block).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: ContentBlock = serde_json::from_str(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, block);
        }
    }

    #[test]
    fn timestamps_parse_as_chrono_does(
        y in 0i32..10000, mo in 0u32..14, d in 0u32..33,
        h in 0u32..25, mi in 0u32..61, s in 0u32..62,
        frac in prop::option::of((1usize..11, 0u64..10_000_000_000)),
        zone in prop_oneof![Just("Z"), Just("z"), Just("+00:00"), Just("+01:30"), Just("-05:00"), Just("")],
        sep in prop_oneof![Just('T'), Just('t'), Just(' ')],
    ) {
        let mut t = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}");
        if let Some((digits, n)) = frac {
            let n = format!("{n:010}");
            t.push('.');
            t.push_str(&n[..digits]);
        }
        t.push_str(zone);
        check_ts(&t)?;
    }
}

fn check_ts(t: &str) -> Result<(), TestCaseError> {
    #[derive(Deserialize, Debug, PartialEq)]
    struct New(#[serde(deserialize_with = "super::timestamp")] DateTime<Utc>);
    let json = serde_json::to_string(t).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let new = serde_json::from_str::<New>(&json).map(|n| n.0).ok();
    let old = serde_json::from_str::<DateTime<Utc>>(&json).ok();
    prop_assert_eq!(new, old, "{}", t);
    Ok(())
}

#[test]
fn timestamp_edge_cases_parse_as_chrono_does() {
    for t in [
        "2026-01-01T00:00:00Z",
        "2026-12-03T07:55:02.123456789Z",
        "2026-12-03T07:55:02.1Z",
        "2026-12-03T07:55:02.1234567891Z",
        "2026-12-03T07:55:02.Z",
        "2016-12-31T23:59:60Z",
        "2016-12-31T23:59:59.999999999Z",
        "2026-02-29T00:00:00Z",
        "2024-02-29T00:00:00Z",
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00-00:00",
        "2026-01-01T24:00:00Z",
        "+2026-01-01T00:00:00Z",
        "2026-1-01T00:00:00Z",
        "2026-01-01T00:00:00ZZ",
        "",
        "now",
    ] {
        check_ts(t).unwrap_or_else(|e| panic!("{e}"));
    }
    let now = Utc::now();
    let written = serde_json::to_string(&now).expect("encode");
    let back: DateTime<Utc> = super::timestamp(&mut serde_json::Deserializer::from_str(&written))
        .expect("decode what chrono writes");
    assert_eq!(back, now);
}
