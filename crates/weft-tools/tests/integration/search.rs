//! `tool-search`: glob and grep.

use std::fs;
use std::path::Path;

use serde_json::json;

use crate::common::*;

const SEARCH: &str = "tool-search";

fn tree(root: &Path) -> std::io::Result<()> {
    for (path, text) in [
        ("Cargo.toml", "[package]\nname = \"demo\"\n"),
        (
            "src/main.rs",
            "fn main() {\n    // TODO: greet\n    println!(\"Hello\");\n}\n",
        ),
        ("src/util/mod.rs", "pub fn helper() {} // todo later\n"),
        ("docs/guide.md", "# Guide\nSee TODO list.\n"),
        ("target/debug/build.rs", "// TODO generated\n"),
        (".github/ci.yml", "on: push # TODO\n"),
        (".gitignore", "target/\n*.log\n"),
        ("run.log", "TODO in a log\n"),
    ] {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(p, text)?;
    }
    fs::create_dir_all(root.join(".git"))?;
    fs::write(root.join(".git/HEAD"), "TODO ref\n")?;
    fs::write(root.join("src/blob.bin"), b"TODO\0binary")?;
    Ok(())
}

#[tokio::test]
async fn glob_matches_sorted_and_respects_gitignore() -> TestResult {
    let dir = tempfile::tempdir()?;
    tree(dir.path())?;
    let glob = tool(SEARCH, json!({}), "glob");
    let c = ctx(dir.path());
    let out = glob.execute(json!({"pattern": "**/*.rs"}), &c).await;
    assert_eq!(expect_ok(&out), "src/main.rs\nsrc/util/mod.rs\n");

    let out = glob.execute(json!({"pattern": "src/*.rs"}), &c).await;
    assert_eq!(expect_ok(&out), "src/main.rs\n");

    let out = glob.execute(json!({"pattern": "*.{toml,md}"}), &c).await;
    assert_eq!(expect_ok(&out), "Cargo.toml\n");

    let out = glob
        .execute(json!({"pattern": "*.md", "path": "docs"}), &c)
        .await;
    assert_eq!(expect_ok(&out), "docs/guide.md\n");

    // Hidden files are found, .git never, ignored files never.
    let out = glob.execute(json!({"pattern": "**/*"}), &c).await;
    let all = expect_ok(&out);
    assert!(all.contains(".github/ci.yml"), "{all}");
    assert!(!all.contains(".git/HEAD"), "{all}");
    assert!(!all.contains("target/"), "{all}");
    assert!(!all.contains("run.log"), "{all}");

    // An absolute pattern works and shows paths relative to the working dir.
    let abs = format!("{}/src/**/*.rs", dir.path().display());
    let out = glob.execute(json!({"pattern": abs}), &c).await;
    assert_eq!(expect_ok(&out), "src/main.rs\nsrc/util/mod.rs\n");
    Ok(())
}

#[tokio::test]
async fn glob_without_matches_hints_and_bad_patterns_fail() -> TestResult {
    let dir = tempfile::tempdir()?;
    tree(dir.path())?;
    let glob = tool(SEARCH, json!({}), "glob");
    let c = ctx(dir.path());
    let out = glob.execute(json!({"pattern": "*.rs"}), &c).await;
    let text = expect_ok(&out);
    assert!(text.starts_with("No files match"), "{text}");
    assert!(text.contains("try \"**/*.rs\""), "{text}");

    let out = glob
        .execute(json!({"pattern": "*.rs", "path": "nope"}), &c)
        .await;
    assert!(expect_ok(&out).contains("does not exist"));

    let err = expect_error(&glob.execute(json!({"pattern": "src/[z"}), &c).await);
    assert!(err.contains("invalid glob pattern"), "{err}");
    let err = expect_error(&glob.execute(json!({"pattern": ""}), &c).await);
    assert!(err.contains("non-empty `pattern`"), "{err}");
    Ok(())
}

#[tokio::test]
async fn glob_caps_its_results() -> TestResult {
    let dir = tempfile::tempdir()?;
    for i in 0..(weft_tools::search::MAX_GLOB_RESULTS + 20) {
        fs::write(dir.path().join(format!("f{i:04}.txt")), "")?;
    }
    let glob = tool(SEARCH, json!({}), "glob");
    let out = glob
        .execute(json!({"pattern": "*.txt"}), &ctx(dir.path()))
        .await;
    let text = expect_ok(&out);
    assert!(text.starts_with("f0000.txt\nf0001.txt\n"));
    assert_eq!(
        text.lines().count(),
        weft_tools::search::MAX_GLOB_RESULTS + 1
    );
    assert!(
        text.contains("showing the first 500 of 520 matching files"),
        "{}",
        text.lines().last().unwrap_or_default()
    );
    Ok(())
}

#[tokio::test]
async fn grep_reports_path_line_text() -> TestResult {
    let dir = tempfile::tempdir()?;
    tree(dir.path())?;
    let grep = tool(SEARCH, json!({}), "grep");
    let c = ctx(dir.path());
    let out = grep.execute(json!({"pattern": "TODO"}), &c).await;
    assert_eq!(
        expect_ok(&out),
        ".github/ci.yml:1: on: push # TODO\ndocs/guide.md:2: See TODO list.\nsrc/main.rs:2:     // TODO: greet\n"
    );

    let out = grep
        .execute(
            json!({"pattern": "todo", "case_insensitive": true, "glob": "*.rs"}),
            &c,
        )
        .await;
    assert_eq!(
        expect_ok(&out),
        "src/main.rs:2:     // TODO: greet\nsrc/util/mod.rs:1: pub fn helper() {} // todo later\n"
    );

    let out = grep
        .execute(json!({"pattern": r"fn \w+\(", "path": "src/main.rs"}), &c)
        .await;
    assert_eq!(expect_ok(&out), "src/main.rs:1: fn main() {\n");

    let out = grep
        .execute(json!({"pattern": "TODO", "glob": "!*.md"}), &c)
        .await;
    let text = expect_ok(&out);
    assert!(
        !text.contains("guide.md") && text.contains("main.rs"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn grep_caps_and_explains() -> TestResult {
    let dir = tempfile::tempdir()?;
    let lines: String = (1..=50).map(|i| format!("match {i}\n")).collect();
    fs::write(dir.path().join("many.txt"), lines)?;
    let grep = tool(SEARCH, json!({}), "grep");
    let c = ctx(dir.path());
    let out = grep
        .execute(json!({"pattern": "match", "max_results": 5}), &c)
        .await;
    let text = expect_ok(&out);
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.contains("many.txt:5: match 5\n"));
    assert!(text.contains("stopped after 5 matches"), "{text}");

    let out = grep.execute(json!({"pattern": "absent"}), &c).await;
    assert_eq!(
        expect_ok(&out),
        "No matches for /absent/ in the working directory."
    );

    for (input, wanted) in [
        (json!({"pattern": "("}), "not a valid regular expression"),
        (json!({"pattern": "x", "max_results": 0}), "at least 1"),
        (
            json!({"pattern": "x", "path": "missing"}),
            "missing does not exist",
        ),
        (json!({"pattern": "x", "glob": "[z"}), "glob"),
        (json!({"regex": "x"}), "no field `regex`"),
    ] {
        let err = expect_error(&grep.execute(input.clone(), &c).await);
        assert!(err.contains(wanted), "{input}: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn glob_and_grep_never_enter_weft_home() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wd = dir.path();
    // The home inside the working directory (e.g. a daemon serving $HOME).
    let home = wd.join(".weft");
    fs::create_dir_all(home.join("projects/p/s1"))?;
    fs::write(home.join("config.toml"), "token = \"SECRET\"\n")?;
    fs::write(home.join("projects/p/s1/log.jsonl"), "SECRET log\n")?;
    fs::create_dir_all(wd.join("src"))?;
    fs::write(wd.join("src/a.rs"), "// SECRET-free\n")?;
    std::os::unix::fs::symlink(home.join("config.toml"), wd.join("src/link.toml"))?;
    let access = weft_tools::ToolAccess::new().protect(&home);
    let glob = tool_with(access.clone(), SEARCH, json!({}), "glob");
    let grep = tool_with(access, SEARCH, json!({}), "grep");

    for pattern in ["**/*", "**/*.toml", "**/*.jsonl"] {
        let out = expect_ok(&glob.execute(json!({"pattern": pattern}), &ctx(wd)).await);
        assert!(
            !out.contains(".weft") && !out.contains("link.toml"),
            "{pattern}: {out}"
        );
    }
    let out = expect_ok(&grep.execute(json!({"pattern": "SECRET"}), &ctx(wd)).await);
    assert_eq!(out.trim(), "src/a.rs:1: // SECRET-free", "{out}");

    // Naming the home (directly, by a pattern, by `..`) is refused.
    for input in [
        json!({"pattern": ".weft/*"}),
        json!({"pattern": "*", "path": ".weft"}),
        json!({"pattern": "*", "path": "src/../.weft/projects"}),
        json!({"pattern": format!("{}/**/*", home.display())}),
    ] {
        let out = glob.execute(input.clone(), &ctx(wd)).await;
        assert!(expect_error(&out).contains("inside weft's home"), "{input}");
    }
    for input in [
        json!({"pattern": "SECRET", "path": ".weft"}),
        json!({"pattern": "SECRET", "path": "src/link.toml"}),
        json!({"pattern": "SECRET", "path": home.join("config.toml")}),
    ] {
        let out = grep.execute(input.clone(), &ctx(wd)).await;
        assert!(expect_error(&out).contains("inside weft's home"), "{input}");
    }
    Ok(())
}

#[tokio::test]
async fn daemon_searches_outside_the_roots_need_approval() -> TestResult {
    let top = tempfile::tempdir()?;
    let wd = top.path().join("project");
    fs::create_dir_all(&wd)?;
    fs::write(top.path().join("private.txt"), "PRIVATE\n")?;
    fs::write(wd.join("public.txt"), "PUBLIC\n")?;
    std::os::unix::fs::symlink(top.path().join("private.txt"), wd.join("link.txt"))?;
    let access = weft_tools::ToolAccess::new().outside_reads(weft_tools::OutsideReads::Ask);
    let grep = tool_with(access.clone(), SEARCH, json!({}), "grep");
    let glob = tool_with(access, SEARCH, json!({}), "glob");

    // Inside: the link out of the project is skipped, the rest searched.
    let out = expect_ok(&grep.execute(json!({"pattern": "P"}), &ctx(&wd)).await);
    assert_eq!(out.trim(), "public.txt:1: PUBLIC", "{out}");
    let out = expect_ok(&glob.execute(json!({"pattern": "*.txt"}), &ctx(&wd)).await);
    assert_eq!(out.trim(), "public.txt", "{out}");

    // Outside without approval: denied.
    let out = grep
        .execute(json!({"pattern": "P", "path": ".."}), &ctx(&wd))
        .await;
    assert!(expect_error(&out).contains("approval was denied"));
    let out = glob
        .execute(json!({"pattern": "../*.txt"}), &ctx(&wd))
        .await;
    assert!(expect_error(&out).contains("approval was denied"));

    // With approval: searched.
    let mut approved = ctx(&wd);
    approved.approval = Some(std::sync::Arc::new(
        weft_core::approval::FixedApproval::allow_all(),
    ));
    let out = expect_ok(
        &grep
            .execute(json!({"pattern": "PRIVATE", "path": ".."}), &approved)
            .await,
    );
    assert!(out.contains("private.txt"), "{out}");
    Ok(())
}
