//! Fuzz target: mount-plan parsing ([`MountPlan::parse`]) in YAML, JSON
//! and TOML.
//!
//! Properties, over arbitrary text, valid plans written in each format, and
//! valid plans damaged structurally (fields removed, wrong types, huge
//! numbers, deep nesting) or textually (truncated, bytes changed):
//! - parsing never panics;
//! - a refusal is a clear error: a non-empty message on one line;
//! - a valid plan written in any of the three formats parses back to the
//!   same plan, without warnings.
//!
//! Runs a small budget in `cargo test`; see TESTING.md for longer runs.

mod fuzz_support;

use std::collections::BTreeMap;

use fuzz_support::{
    byte_mutation, config, id_text, json_value, mutate, mutate_bytes, mutation, text,
};
use proptest::prelude::*;
use serde_json::{Map, Value};
use weft_core::mount::{
    AgentSpec, ModuleSpec, MountError, MountPlan, PlanFormat, SessionSection, SystemSpec,
};

const FORMATS: [PlanFormat; 3] = [PlanFormat::Yaml, PlanFormat::Json, PlanFormat::Toml];

/// A config value TOML can hold too: no `null`, integers within `i64`.
fn config_value() -> impl Strategy<Value = Value> {
    json_value().prop_filter_map("representable in TOML", |v| {
        fn ok(v: &Value) -> bool {
            match v {
                Value::Null => false,
                Value::Number(n) => n.is_i64(),
                Value::Array(a) => a.iter().all(ok),
                Value::Object(o) => o.values().all(ok),
                _ => true,
            }
        }
        ok(&v).then_some(v)
    })
}

fn module() -> impl Strategy<Value = ModuleSpec> {
    (
        prop_oneof![id_text(), text()],
        prop::collection::vec((text(), config_value()), 0..2),
    )
        .prop_map(|(module, config)| ModuleSpec {
            module,
            config: config.into_iter().collect::<Map<_, _>>(),
        })
}

fn modules() -> impl Strategy<Value = Vec<ModuleSpec>> {
    prop::collection::vec(module(), 0..2)
}

fn system() -> impl Strategy<Value = Option<SystemSpec>> {
    prop::option::of(text().prop_map(|instruction| SystemSpec { instruction }))
}

fn agent() -> impl Strategy<Value = AgentSpec> {
    (text(), system(), modules(), prop::option::of(modules())).prop_map(
        |(description, system, providers, tools)| AgentSpec {
            description,
            system,
            providers,
            tools,
        },
    )
}

/// A valid mount plan.
fn plan() -> impl Strategy<Value = MountPlan> {
    (
        (module(), module(), system()),
        (
            modules(),
            modules(),
            modules(),
            prop::collection::btree_map(text(), agent(), 0..2),
        ),
    )
        .prop_map(
            |((orchestrator, context, system), (providers, tools, hooks, agents))| MountPlan {
                session: SessionSection {
                    orchestrator,
                    context,
                },
                system,
                providers,
                tools,
                hooks,
                agents: agents.into_iter().collect::<BTreeMap<_, _>>(),
            },
        )
}

/// Writes a JSON document in `format` (`None` when the format cannot
/// hold it, e.g. TOML and a top-level array).
fn write(value: &Value, format: PlanFormat) -> Option<String> {
    match format {
        PlanFormat::Json => serde_json::to_string(value).ok(),
        PlanFormat::Yaml => serde_yaml::to_string(value).ok(),
        PlanFormat::Toml => toml::to_string(value).ok(),
    }
}

/// Parses and checks that a refusal is one clear line.
fn check_parse(text: &str, format: PlanFormat) -> Result<(), TestCaseError> {
    if let Err(e) = MountPlan::parse(text, format) {
        let message = e.to_string();
        prop_assert!(!message.trim().is_empty(), "empty error for {:?}", text);
        prop_assert!(
            !message.contains('\n'),
            "a {:?} error spans several lines: {}",
            format,
            message
        );
        if let MountError::Parse { message, .. } = &e {
            prop_assert!(!message.trim().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz_mount.txt", 256))]

    /// Arbitrary text is parsed or refused with one clear line, in every
    /// format.
    #[test]
    fn arbitrary_text_never_panics(s in prop_oneof![any::<String>(), "[-a-z:{}\\[\\]=,\"' \n\t#0-9.]{0,64}"]) {
        for format in FORMATS {
            check_parse(&s, format)?;
        }
    }

}

proptest! {
    // A plan is written and parsed in three formats per case: fewer cases
    // by default.
    #![proptest_config(config("proptest-regressions/fuzz_mount.txt", 64))]

    /// Valid plans round-trip through every format.
    #[test]
    fn valid_plans_round_trip(p in plan()) {
        let value = serde_json::to_value(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for format in FORMATS {
            let text = write(&value, format)
                .ok_or_else(|| TestCaseError::fail(format!("cannot write {format:?}")))?;
            let parsed = MountPlan::parse(&text, format)
                .map_err(|e| TestCaseError::fail(format!("{format:?}: {e}\n{text}")))?;
            prop_assert_eq!(&parsed.plan, &p, "{:?}:\n{}", format, text);
            prop_assert!(parsed.warnings.is_empty());
        }
    }

    /// Damaged plans are parsed or refused with one clear line.
    #[test]
    fn mutated_plans_never_panic(
        p in plan(),
        m in mutation(),
        bytes in prop::option::of(byte_mutation()),
    ) {
        let value = serde_json::to_value(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // The structural mutation works on JSON text; re-read it as a value
        // (when it still parses) to write it in the other formats.
        let json = mutate(&value, &m);
        let mut texts = vec![(PlanFormat::Json, json.clone())];
        if let Ok(v) = serde_json::from_str::<Value>(&json) {
            for format in [PlanFormat::Yaml, PlanFormat::Toml] {
                if let Some(t) = write(&v, format) {
                    texts.push((format, t));
                }
            }
        }
        for (format, text) in texts {
            let text = match &bytes {
                Some(b) => String::from_utf8_lossy(&mutate_bytes(text.as_bytes(), b)).into_owned(),
                None => text,
            };
            check_parse(&text, format)?;
            // YAML also reads JSON.
            check_parse(&text, PlanFormat::Yaml)?;
        }
    }
}

/// Regression (found by `arbitrary_text_never_panics`): a TOML syntax error
/// was shown as the toml crate renders it, a source excerpt over several
/// lines. It is one line now, with the position.
#[test]
fn toml_errors_are_one_line() {
    let err = MountPlan::parse(
        "[session]\norchestrator = \"loop-basic\"\n$",
        PlanFormat::Toml,
    )
    .expect_err("not TOML");
    let message = err.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("line 3, column 1"), "{message}");
}
