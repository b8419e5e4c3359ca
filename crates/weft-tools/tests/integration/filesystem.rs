//! `tool-filesystem`: read_file, write_file, edit_file.

use std::fs;

use serde_json::json;

use crate::common::*;

const FS: &str = "tool-filesystem";

#[tokio::test]
async fn read_file_numbers_lines_relative_to_the_working_dir() -> TestResult {
    let dir = tempfile::tempdir()?;
    fs::create_dir(dir.path().join("src"))?;
    fs::write(dir.path().join("src/lib.rs"), "fn a() {}\n\nfn b() {}\n")?;
    let read = tool(FS, json!({}), "read_file");
    let out = read
        .execute(json!({"path": "src/lib.rs"}), &ctx(dir.path()))
        .await;
    assert_eq!(
        expect_ok(&out),
        "     1\tfn a() {}\n     2\t\n     3\tfn b() {}\n"
    );

    let absolute = dir.path().join("src/lib.rs");
    let out = read
        .execute(
            json!({"path": absolute, "offset": 2, "limit": 1}),
            &ctx(dir.path()),
        )
        .await;
    let text = expect_ok(&out);
    assert!(text.starts_with("     2\t\n"), "{text}");
    assert!(
        text.contains("showing lines 2-2 of 3; call read_file with offset=3"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn read_file_reads_outside_the_working_dir() -> TestResult {
    let outside = tempfile::tempdir()?;
    let dir = tempfile::tempdir()?;
    let file = outside.path().join("other.txt");
    fs::write(&file, "elsewhere\n")?;
    let read = tool(FS, json!({}), "read_file");
    let out = read.execute(json!({"path": file}), &ctx(dir.path())).await;
    assert!(expect_ok(&out).contains("elsewhere"));
    Ok(())
}

#[tokio::test]
async fn read_file_errors_are_clear() -> TestResult {
    let dir = tempfile::tempdir()?;
    fs::write(
        dir.path().join("img.png"),
        [0x89u8, b'P', b'N', b'G', 0, 0, 1],
    )?;
    let read = tool(FS, json!({}), "read_file");
    let c = ctx(dir.path());
    let cases = [
        (json!({"path": "missing.txt"}), "missing.txt does not exist"),
        (json!({"path": "."}), "is a directory"),
        (json!({"path": "img.png"}), "binary file"),
        (json!({}), "needs `path`"),
        (json!({"path": 7}), "`path` to be a string"),
        (json!({"path": ""}), "non-empty `path`"),
        (json!({"path": "x", "limit": 0}), "`limit` to be at least 1"),
        (
            json!({"path": "x", "offset": -3}),
            "non-negative whole number",
        ),
        (json!({"file_path": "x"}), "no field `file_path`"),
        (json!("just a string"), "JSON object"),
    ];
    for (input, wanted) in cases {
        let err = expect_error(&read.execute(input.clone(), &c).await);
        assert!(err.contains(wanted), "{input}: {err:?} lacks {wanted:?}");
    }
    Ok(())
}

#[tokio::test]
async fn write_file_creates_parents_and_overwrites() -> TestResult {
    let dir = tempfile::tempdir()?;
    let write = tool(FS, json!({}), "write_file");
    let c = ctx(dir.path());
    let out = write
        .execute(json!({"path": "a/b/c.txt", "content": "one\ntwo\n"}), &c)
        .await;
    assert_eq!(expect_ok(&out), "Created a/b/c.txt (8 bytes, 2 lines)");
    assert_eq!(
        fs::read_to_string(dir.path().join("a/b/c.txt"))?,
        "one\ntwo\n"
    );
    let out = write
        .execute(json!({"path": "a/b/c.txt", "content": ""}), &c)
        .await;
    assert!(expect_ok(&out).starts_with("Overwrote a/b/c.txt"));
    assert_eq!(fs::read_to_string(dir.path().join("a/b/c.txt"))?, "");

    let err = expect_error(&write.execute(json!({"path": "a/b"}), &c).await);
    assert!(err.contains("needs `content`"), "{err}");
    let err = expect_error(
        &write
            .execute(json!({"path": "a", "content": "x"}), &c)
            .await,
    );
    assert!(err.contains("is a directory"), "{err}");
    Ok(())
}

#[tokio::test]
async fn writes_and_edits_outside_the_working_dir_are_refused() -> TestResult {
    let outside = tempfile::tempdir()?;
    let dir = tempfile::tempdir()?;
    let target = outside.path().join("victim.txt");
    fs::write(&target, "original")?;
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape"))?;
    let write = tool(FS, json!({}), "write_file");
    let edit = tool(FS, json!({}), "edit_file");
    let c = ctx(dir.path());

    let attempts = [
        json!({"path": target, "content": "pwned"}),
        json!({"path": "../victim.txt", "content": "pwned"}),
        json!({"path": "escape/victim.txt", "content": "pwned"}),
        json!({"path": "new/../../x.txt", "content": "pwned"}),
    ];
    for input in attempts {
        let err = expect_error(&write.execute(input.clone(), &c).await);
        assert!(
            err.contains("outside the working directory") && err.contains("allow_outside_workdir"),
            "{input}: {err}"
        );
    }
    let err = expect_error(
        &edit
            .execute(
                json!({"path": "escape/victim.txt", "old_string": "original", "new_string": "x"}),
                &c,
            )
            .await,
    );
    assert!(err.contains("outside the working directory"), "{err}");
    assert_eq!(fs::read_to_string(&target)?, "original");

    // The module config can allow it.
    let write = tool(FS, json!({"allow_outside_workdir": true}), "write_file");
    let out = write
        .execute(json!({"path": target, "content": "allowed"}), &c)
        .await;
    expect_ok(&out);
    assert_eq!(fs::read_to_string(&target)?, "allowed");
    Ok(())
}

#[tokio::test]
async fn writing_through_an_inside_symlink_writes_its_target() -> TestResult {
    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join("real.txt"), "old")?;
    std::os::unix::fs::symlink(dir.path().join("real.txt"), dir.path().join("link.txt"))?;
    let write = tool(FS, json!({}), "write_file");
    let out = write
        .execute(
            json!({"path": "link.txt", "content": "new"}),
            &ctx(dir.path()),
        )
        .await;
    expect_ok(&out);
    assert!(
        fs::symlink_metadata(dir.path().join("link.txt"))?
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(dir.path().join("real.txt"))?, "new");
    Ok(())
}

#[tokio::test]
async fn edit_file_replaces_a_unique_match() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("main.rs");
    fs::write(&path, "fn main() {\n    println!(\"hi\");\n}\n")?;
    let edit = tool(FS, json!({}), "edit_file");
    let out = edit
        .execute(
            json!({"path": "main.rs", "old_string": "\"hi\"", "new_string": "\"hello\""}),
            &ctx(dir.path()),
        )
        .await;
    let text = expect_ok(&out);
    assert!(
        text.starts_with("Edited main.rs: replaced 1 occurrence."),
        "{text}"
    );
    assert!(text.contains("     2\t    println!(\"hello\");"), "{text}");
    assert_eq!(
        fs::read_to_string(&path)?,
        "fn main() {\n    println!(\"hello\");\n}\n"
    );
    Ok(())
}

#[tokio::test]
async fn edit_file_ambiguity_needs_context_or_replace_all() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("x.txt");
    fs::write(&path, "foo bar\nfoo baz\nfoo\n")?;
    let edit = tool(FS, json!({}), "edit_file");
    let c = ctx(dir.path());
    let err = expect_error(
        &edit
            .execute(
                json!({"path": "x.txt", "old_string": "foo", "new_string": "qux"}),
                &c,
            )
            .await,
    );
    assert!(
        err.contains("occurs 3 times") && err.contains("replace_all"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&path)?, "foo bar\nfoo baz\nfoo\n");

    let out = edit
        .execute(
            json!({"path": "x.txt", "old_string": "foo baz", "new_string": "qux baz"}),
            &c,
        )
        .await;
    expect_ok(&out);
    let out = edit
        .execute(
            json!({"path": "x.txt", "old_string": "foo", "new_string": "qux", "replace_all": true}),
            &c,
        )
        .await;
    assert!(expect_ok(&out).contains("replaced 2 occurrences"));
    assert_eq!(fs::read_to_string(&path)?, "qux bar\nqux baz\nqux\n");
    Ok(())
}

#[tokio::test]
async fn edit_file_errors_say_what_to_do() -> TestResult {
    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join("x.txt"), "alpha\n")?;
    fs::write(dir.path().join("latin1.txt"), [b'c', b'a', b'f', 0xE9])?;
    let edit = tool(FS, json!({}), "edit_file");
    let c = ctx(dir.path());
    let cases = [
        (
            json!({"path": "x.txt", "old_string": "beta", "new_string": "gamma"}),
            "not found in x.txt",
        ),
        (
            json!({"path": "nope.txt", "old_string": "a", "new_string": "b"}),
            "use write_file",
        ),
        (
            json!({"path": "x.txt", "old_string": "", "new_string": "b"}),
            "non-empty `old_string`",
        ),
        (
            json!({"path": "x.txt", "old_string": "alpha", "new_string": "alpha"}),
            "identical",
        ),
        (
            json!({"path": "latin1.txt", "old_string": "caf", "new_string": "x"}),
            "not UTF-8",
        ),
        (
            json!({"path": "x.txt", "old_string": "alpha", "new_string": "b", "replace_all": "yes"}),
            "true or false",
        ),
    ];
    for (input, wanted) in cases {
        let err = expect_error(&edit.execute(input.clone(), &c).await);
        assert!(err.contains(wanted), "{input}: {err:?} lacks {wanted:?}");
    }
    assert_eq!(fs::read_to_string(dir.path().join("x.txt"))?, "alpha\n");
    Ok(())
}

#[tokio::test]
async fn every_tool_has_an_object_schema_listing_required_fields() -> TestResult {
    let modules = [
        (
            "tool-filesystem",
            vec!["read_file", "write_file", "edit_file"],
        ),
        ("tool-search", vec!["glob", "grep"]),
        ("tool-bash", vec!["bash"]),
        ("tool-task", vec!["task"]),
    ];
    for (module, expected) in modules {
        let tools = mount(module, json!({}))?;
        let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
        assert_eq!(names, expected);
        for t in &tools {
            let schema = t.input_schema();
            assert_eq!(schema["type"], "object", "{}", t.name());
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for required in schema["required"].as_array().cloned().unwrap_or_default() {
                let r = required.as_str().unwrap_or_default();
                assert!(props.contains_key(r), "{}: {r} not in properties", t.name());
            }
            assert!(!t.description().is_empty());
            // Garbage input is a clear failure, never a panic.
            for junk in [json!(null), json!(42), json!([]), json!({"zzz": 1})] {
                let out = t.execute(junk, &ctx(std::path::Path::new("/"))).await;
                assert!(!out.success, "{}", t.name());
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn bad_module_configs_are_refused() {
    for (module, config) in [
        ("tool-filesystem", json!({"allow_outside_workdir": "yes"})),
        ("tool-filesystem", json!({"alow_outside_workdir": true})),
        ("tool-search", json!({"x": 1})),
        ("tool-task", json!({"x": 1})),
    ] {
        let err = mount(module, config).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains(module) && e.contains("invalid config")),
            "{module}: {err:?}"
        );
    }
}

/// A project and, beside it, a weft home holding a token.
fn project_and_home() -> std::io::Result<(tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)>
{
    let top = tempfile::tempdir()?;
    let project = top.path().join("project");
    let home = top.path().join("weft-home");
    fs::create_dir_all(&project)?;
    fs::create_dir_all(home.join("projects"))?;
    fs::write(
        home.join("config.toml"),
        "[serve]\ntoken = \"SECRET-TOKEN\"\n",
    )?;
    Ok((top, project, home))
}

#[tokio::test]
async fn read_file_never_reads_weft_home() -> TestResult {
    let (_top, project, home) = project_and_home()?;
    std::os::unix::fs::symlink(home.join("config.toml"), project.join("cfg-link"))?;
    std::os::unix::fs::symlink(&home, project.join("home-link"))?;
    let access = weft_tools::ToolAccess::new().protect(&home);
    let read = tool_with(access, FS, json!({}), "read_file");
    for path in [
        home.join("config.toml").display().to_string(),
        "cfg-link".into(),
        "home-link/config.toml".into(),
        "../weft-home/config.toml".into(),
        "../project/../weft-home/./config.toml".into(),
        home.display().to_string(),
    ] {
        let out = read.execute(json!({"path": path}), &ctx(&project)).await;
        let err = expect_error(&out);
        assert!(err.contains("inside weft's home"), "{path}: {err}");
        assert!(!out.output.contains("SECRET"), "{path}: {out:?}");
    }
    // Outside the home, the CLI's policy still reads anywhere.
    fs::write(project.join("ok.txt"), "fine\n")?;
    let out = read
        .execute(json!({"path": "ok.txt"}), &ctx(&project))
        .await;
    assert!(expect_ok(&out).contains("fine"));
    Ok(())
}

#[tokio::test]
async fn write_and_edit_never_touch_weft_home() -> TestResult {
    let (_top, project, home) = project_and_home()?;
    let access = weft_tools::ToolAccess::new().protect(&home);
    let config = json!({"allow_outside_workdir": true});
    let write = tool_with(access.clone(), FS, config.clone(), "write_file");
    let out = write
        .execute(
            json!({"path": "../weft-home/config.toml", "content": "x"}),
            &ctx(&project),
        )
        .await;
    assert!(expect_error(&out).contains("inside weft's home"));
    let edit = tool_with(access, FS, config, "edit_file");
    let out = edit
        .execute(
            json!({"path": home.join("config.toml"), "old_string": "SECRET", "new_string": "x"}),
            &ctx(&project),
        )
        .await;
    assert!(expect_error(&out).contains("inside weft's home"));
    assert!(fs::read_to_string(home.join("config.toml"))?.contains("SECRET-TOKEN"));
    Ok(())
}

#[tokio::test]
async fn daemon_reads_outside_the_roots_need_approval() -> TestResult {
    let (top, project, _home) = project_and_home()?;
    let outside = top.path().join("outside.txt");
    fs::write(&outside, "private\n")?;
    fs::write(project.join("inside.txt"), "public\n")?;
    let access = weft_tools::ToolAccess::new().outside_reads(weft_tools::OutsideReads::Ask);
    let read = tool_with(access, FS, json!({}), "read_file");

    // Inside the working directory: no approval needed.
    let out = read
        .execute(json!({"path": "inside.txt"}), &ctx(&project))
        .await;
    assert!(expect_ok(&out).contains("public"));

    // Outside, with no approval system (the daemon without --approve): denied.
    let out = read
        .execute(json!({"path": "../outside.txt"}), &ctx(&project))
        .await;
    let err = expect_error(&out);
    assert!(err.contains("approval was denied"), "{err}");
    assert!(!out.output.contains("private"));

    // Through a link inside the project: still outside, still denied.
    std::os::unix::fs::symlink(&outside, project.join("link.txt"))?;
    let out = read
        .execute(json!({"path": "link.txt"}), &ctx(&project))
        .await;
    assert!(expect_error(&out).contains("approval was denied"));

    // With an approval system that allows: read.
    let mut approved = ctx(&project);
    approved.approval = Some(std::sync::Arc::new(
        weft_core::approval::FixedApproval::allow_all(),
    ));
    let out = read.execute(json!({"path": outside}), &approved).await;
    assert!(expect_ok(&out).contains("private"));

    // An extra read root needs no approval.
    let access = weft_tools::ToolAccess::new()
        .outside_reads(weft_tools::OutsideReads::Ask)
        .read_root(top.path());
    let read = tool_with(access, FS, json!({}), "read_file");
    let out = read.execute(json!({"path": outside}), &ctx(&project)).await;
    assert!(expect_ok(&out).contains("private"));
    Ok(())
}
