//! End to end: `weft run --schema FILE` (issue 13, structured output) with
//! the scripted provider: the validated JSON on stdout (compact when
//! piped, pretty on a terminal), a JSON or YAML schema, one repair, a
//! failed repair exiting non-zero with one sentence, an invalid schema
//! refused before any session, and the value on the stored assistant
//! message (`session show --json --transcript`).

mod support;

use serde_json::{Value, json};
use support::*;

const SCHEMA: &str = r#"{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}"#;
const YAML_SCHEMA: &str = "name: person\nstrict: true\nschema:\n  type: object\n  properties:\n    name: {type: string}\n    age: {type: integer}\n  required: [name, age]\n";

fn script(env: &Env, answers: &[&str]) -> String {
    let responses: Vec<Value> = answers.iter().map(|a| json!({"text": a})).collect();
    env.script("s.json", &json!({"responses": responses}).to_string())
        .to_str()
        .expect("path")
        .to_string()
}

fn run(env: &Env, schema: &str, answers: &[&str]) -> std::process::Output {
    let script = script(env, answers);
    env.weft(&["run", "--schema", schema, "--script", &script, "who?"])
}

/// The session id `weft run` names on stderr (`session ID`).
fn session_of(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("session "))
        .unwrap_or_else(|| panic!("no session line: {stderr}"))
        .trim()
        .to_string()
}

fn sessions(env: &Env) -> usize {
    env.json(&["session", "list", "--json"])
        .as_array()
        .expect("a list")
        .len()
}

#[test]
fn the_validated_json_is_printed_compact_when_piped_and_stored() {
    let env = Env::new();
    let schema = env.file("person.json", SCHEMA);
    let out = run(
        &env,
        schema.to_str().unwrap(),
        &["```json\n{\"name\": \"Ada\",\n \"age\": 36}\n```"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"name\":\"Ada\",\"age\":36}\n"
    );
    let id = session_of(&out);
    let show = env.json(&["session", "show", &id, "--json", "--transcript"]);
    let transcript = show["transcript"].as_array().expect("transcript");
    assert_eq!(transcript.len(), 2, "{show}");
    assert_eq!(
        transcript[1]["structured"],
        json!({"name": "Ada", "age": 36})
    );
    assert_eq!(show["session"]["status"], "completed");
}

#[test]
fn a_yaml_schema_and_one_repair() {
    let env = Env::new();
    let schema = env.file("person.yaml", YAML_SCHEMA);
    let out = run(
        &env,
        schema.to_str().unwrap(),
        &[
            r#"{"name": "Ada", "age": "old"}"#,
            r#"{"name": "Ada", "age": 36}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"name\":\"Ada\",\"age\":36}\n"
    );
    // --output json carries it too.
    let script = script(&env, &[r#"{"name": "Bo", "age": 7}"#]);
    let v = env.json(&[
        "run",
        "--schema",
        schema.to_str().unwrap(),
        "--script",
        &script,
        "--output",
        "json",
        "who?",
    ]);
    assert_eq!(v["structured"], json!({"name": "Bo", "age": 7}), "{v}");
}

#[test]
fn a_failed_repair_exits_non_zero_with_one_sentence() {
    let env = Env::new();
    let schema = env.file("person.json", SCHEMA);
    let out = run(
        &env,
        schema.to_str().unwrap(),
        &[r#"{"name": "Ada"}"#, "Ada, 36 years"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "the model's answer did not match the response schema after one repair attempt (the answer is not valid JSON"
        ),
        "{stderr}"
    );
    let id = session_of(&out);
    let show = env.json(&["session", "show", &id, "--json"]);
    assert_eq!(show["session"]["status"], "failed", "{show}");
}

#[test]
fn an_invalid_schema_is_refused_before_any_session() {
    let env = Env::new();
    let bad = env.file("bad.json", r#"{"type": "objekt"}"#);
    let stderr = env.fails(&[
        "run",
        "--schema",
        bad.to_str().unwrap(),
        "--provider",
        "scripted",
        "hi",
    ]);
    assert!(
        stderr.contains("the response schema is not a valid JSON Schema"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.json"), "{stderr}");
    let broken = env.file("broken.json", "{");
    let stderr = env.fails(&["run", "--schema", broken.to_str().unwrap(), "hi"]);
    assert!(stderr.contains("is not valid JSON"), "{stderr}");
    assert_eq!(sessions(&env), 0);
}

#[test]
fn a_terminal_gets_pretty_json() {
    let env = Env::new();
    let schema = env.file("person.json", SCHEMA);
    let script = script(&env, &[r#"{"name":"Ada","age":36}"#]);
    let command = env.terminal_command(&[
        "run",
        "--schema",
        schema.to_str().unwrap(),
        "--script",
        &script,
        "who?",
    ]);
    let mut pty = rexpect::session::spawn_command(command, Some(30_000)).expect("spawn in a pty");
    pty.exp_string("{\r\n  \"name\": \"Ada\",\r\n  \"age\": 36\r\n}")
        .expect("pretty JSON");
    pty.exp_eof().expect("weft exits");
}
