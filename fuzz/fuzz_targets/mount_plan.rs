//! libFuzzer target: mount-plan parsing in YAML, JSON and TOML (mirrors
//! crates/weft-core/tests/fuzz_mount.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::mount::{MountPlan, PlanFormat};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [PlanFormat::Yaml, PlanFormat::Json, PlanFormat::Toml] {
        if let Err(e) = MountPlan::parse(text, format) {
            let message = e.to_string();
            assert!(!message.trim().is_empty());
            assert!(!message.contains('\n'), "{message}");
        }
    }
});
