//! Tool names as the model sees them: `mcp__<server>__<tool>`, made
//! acceptable to every provider (`^[a-zA-Z0-9_-]{1,64}$`).
//!
//! The one documented way: every character outside `[A-Za-z0-9_-]`
//! becomes `_`; a name longer than 64 characters keeps its first 55 and
//! gets `_` plus 8 hex digits of a hash of the whole unsanitised name; a
//! name equal to one already given gets `_2`, `_3`, … (cut to fit). Knows
//! nothing about servers or connections.

/// The longest name providers accept.
pub const MAX_NAME_LEN: usize = 64;
/// The prefix of every MCP tool name.
pub const PREFIX: &str = "mcp__";

/// The name offered to the model for `tool` of `server` (before making it
/// unique among the module's tools: see [`unique`]).
pub fn tool_name(server: &str, tool: &str) -> String {
    sanitize(&format!("{PREFIX}{server}__{tool}"))
}

/// `raw` with invalid characters replaced and cut to [`MAX_NAME_LEN`]
/// with a hash suffix when too long.
pub fn sanitize(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = if clean.is_empty() {
        "_".to_string()
    } else {
        clean
    };
    if clean.len() <= MAX_NAME_LEN {
        return clean;
    }
    format!("{}_{:08x}", &clean[..MAX_NAME_LEN - 9], fnv1a(raw) as u32)
}

/// Makes `names` distinct, in order: a repeat gets `_2`, `_3`, … (the
/// name cut so the result stays within [`MAX_NAME_LEN`]).
pub fn unique(names: Vec<String>) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    names
        .into_iter()
        .map(|name| {
            let mut candidate = name.clone();
            let mut n = 2;
            while taken.contains(&candidate) {
                let suffix = format!("_{n}");
                let keep = name.len().min(MAX_NAME_LEN - suffix.len());
                candidate = format!("{}{suffix}", &name[..keep]);
                n += 1;
            }
            taken.insert(candidate.clone());
            candidate
        })
        .collect()
}

/// 64-bit FNV-1a: a stable hash (the same in every build and run).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(tool_name("files", "read_file"), "mcp__files__read_file");
        assert_eq!(tool_name("a-b", "c-d"), "mcp__a-b__c-d");
    }

    #[test]
    fn invalid_characters_become_underscores() {
        assert_eq!(
            tool_name("my.server", "get data/now"),
            "mcp__my_server__get_data_now"
        );
        assert_eq!(tool_name("é", "x"), "mcp_____x");
        assert!(valid(&tool_name("σ", "☃")));
    }

    #[test]
    fn long_names_are_cut_with_a_stable_hash() {
        let long = "t".repeat(100);
        let a = tool_name("srv", &long);
        assert_eq!(a.len(), MAX_NAME_LEN);
        assert!(valid(&a));
        assert_eq!(a, tool_name("srv", &long), "stable");
        let b = tool_name("srv", &format!("{long}x"));
        assert_ne!(a, b, "different long names differ");
        assert_eq!(a[..55], b[..55]);
    }

    #[test]
    fn collisions_are_made_unique() {
        let names = unique(vec![
            tool_name("s", "a.b"),
            tool_name("s", "a_b"),
            tool_name("s", "a b"),
        ]);
        assert_eq!(names, ["mcp__s__a_b", "mcp__s__a_b_2", "mcp__s__a_b_3"]);
        let long = "x".repeat(MAX_NAME_LEN);
        let names = unique(vec![long.clone(), long.clone()]);
        assert_eq!(names[1].len(), MAX_NAME_LEN);
        assert!(names[1].ends_with("_2") && names[0] != names[1]);
    }
}
