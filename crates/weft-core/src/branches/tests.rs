//! Tests of the branch, mail and table functions over a log built in
//! memory.

use super::*;
use crate::id::SessionId;
use crate::record::Record;
use crate::session::{Project, SessionMeta};

/// A tiny in-memory log for exercising the pure functions.
struct Log {
    records: Vec<Record>,
}

impl Log {
    fn new() -> Self {
        let meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        Self {
            records: Record::batch(0, [RecordKind::SessionCreated(Box::new(meta))]),
        }
    }
    fn view(&self) -> SessionView {
        SessionView::from_records(&self.records).unwrap()
    }
    fn push(&mut self, kinds: Vec<RecordKind>) {
        let head = self.records.len() as u64;
        self.records.extend(Record::batch(head, kinds));
    }
    fn say(&mut self, branch: &str, role: Role, text: &str) {
        let b = self.view().branch(branch).unwrap().branch.id.clone();
        self.push(vec![RecordKind::message(Message::text(b, role, text))]);
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

#[test]
fn default_branch_exists_and_lookup_by_id_or_name() {
    let mut log = Log::new();
    let view = log.view();
    assert_eq!(view.meta.default_branch.as_str(), "main");
    assert!(view.branch("main").is_some());
    let (b, recs) = new_branch(
        &view,
        NewBranch {
            name: "research notes".into(),
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    log.push(recs);
    let view = log.view();
    assert!(view.branch(b.id.as_str()).is_some(), "by id");
    assert!(view.branch("research notes").is_some(), "by name");
    assert!(matches!(
        new_branch(
            &view,
            NewBranch {
                name: "research notes".into(),
                ..Default::default()
            },
            now()
        ),
        Err(BranchError::NameTaken(_))
    ));
}

#[test]
fn removing_the_default_picks_a_new_one_and_the_last_is_kept() {
    let mut log = Log::new();
    let (_, recs) = new_branch(
        &log.view(),
        NewBranch {
            name: "b".into(),
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    log.push(recs);
    log.push(remove_branch(&log.view(), "main", false).unwrap());
    let view = log.view();
    assert_eq!(view.meta.default_branch.as_str(), "b");
    assert!(view.branch("main").is_none());
    assert!(matches!(
        remove_branch(&view, "b", false),
        Err(BranchError::LastBranch(_))
    ));
    assert!(matches!(
        remove_branch(&view, "zzz", false),
        Err(BranchError::UnknownBranch(_))
    ));
}

#[test]
fn split_clones_once_with_metadata() {
    let mut log = Log::new();
    let (_, recs) = new_branch(
        &log.view(),
        NewBranch {
            name: "src".into(),
            system: Some("be brief".into()),
            tools: vec!["grep".into()],
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    log.push(recs);
    // The branch's system message is its first message.
    assert_eq!(
        log.view().branch("src").unwrap().messages[0]
            .message
            .text_content(),
        "be brief"
    );
    log.say("src", Role::User, "q");
    log.say("src", Role::Assistant, "a");
    let (copy, recs) = split(&log.view(), "src", Some("copy".into()), now()).unwrap();
    log.push(recs);
    let view = log.view();
    let src = view.branch("src").unwrap();
    let dst = view.branch("copy").unwrap();
    assert_eq!(src.messages.len(), dst.messages.len(), "same message count");
    assert_eq!(dst.branch.system.as_deref(), Some("be brief"));
    assert_eq!(dst.branch.tools, vec!["grep".to_string()]);
    let systems = dst
        .messages
        .iter()
        .filter(|m| m.message.role == Role::System)
        .count();
    assert_eq!(systems, 1, "system message not duplicated");
    for (s, d) in src.messages.iter().zip(&dst.messages) {
        assert_ne!(s.message.id, d.message.id);
        assert_eq!(
            d.message.metadata[META_CLONE_FROM],
            Value::String(s.message.id.to_string())
        );
        assert_eq!(d.message.sender.as_deref(), Some(src.branch.id.as_str()));
        assert_eq!(d.message.recipient.as_deref(), Some(copy.id.as_str()));
    }
    // exclude_clone really excludes.
    let all = concat_messages(&view, None, false, false).unwrap();
    let no_clones = concat_messages(&view, None, true, false).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(no_clones.len(), 3);
}

#[test]
fn exclude_load_drops_loaded_messages() {
    let mut log = Log::new();
    let loaded = vec![Message::text(BranchId::main(), Role::User, "imported")];
    let (_, recs) = new_branch(
        &log.view(),
        NewBranch {
            name: "l".into(),
            messages: loaded,
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    log.push(recs);
    log.say("l", Role::User, "fresh");
    let view = log.view();
    assert_eq!(
        concat_messages(&view, Some(&["l".into()]), false, false)
            .unwrap()
            .len(),
        2
    );
    let kept = concat_messages(&view, Some(&["l".into()]), false, true).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].message.text_content(), "fresh");
}

#[test]
fn mail_direct_broadcast_fifo_and_unknown_recipient() {
    let mut log = Log::new();
    for name in ["a", "b"] {
        let (_, recs) = new_branch(
            &log.view(),
            NewBranch {
                name: name.into(),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        log.push(recs);
    }
    assert!(matches!(
        send_mail(
            &log.view(),
            "main",
            Some("nobody"),
            MailCategory::Message,
            "x".into(),
            now()
        ),
        Err(BranchError::UnknownBranch(_))
    ));
    for text in ["one", "two", "three"] {
        let (_, recs) = send_mail(
            &log.view(),
            "main",
            Some("a"),
            MailCategory::Message,
            text.into(),
            now(),
        )
        .unwrap();
        log.push(recs);
    }
    let (mail, recs) = send_mail(
        &log.view(),
        "b",
        None,
        MailCategory::Message,
        "hello all".into(),
        now(),
    )
    .unwrap();
    assert_eq!(mail.to.len(), 2, "broadcast reaches every other branch");
    log.push(recs);
    assert_eq!(log.view().inbox(&BranchId::parse("a").unwrap()).len(), 4);

    let (n, recs) = collect_mail(&log.view(), Some("a"), Some("main"), now()).unwrap();
    assert_eq!(n, 3);
    log.push(recs);
    let view = log.view();
    let texts: Vec<String> = view
        .messages("a")
        .iter()
        .map(|m| m.text_content())
        .collect();
    assert_eq!(texts, ["one", "two", "three"], "per-sender FIFO");
    assert_eq!(view.messages("a")[0].sender.as_deref(), Some("main"));
    // The broadcast still waits for a and main.
    assert_eq!(view.mail.len(), 1);
    let (n, recs) = collect_mail(&view, None, None, now()).unwrap();
    assert_eq!(n, 2);
    log.push(recs);
    assert!(log.view().mail.is_empty());
}

#[test]
fn tool_and_model_mail_change_settings() {
    let mut log = Log::new();
    let (_, recs) = new_branch(
        &log.view(),
        NewBranch {
            name: "t".into(),
            tools: vec!["grep".into()],
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    log.push(recs);
    let (_, recs) = new_branch(
        &log.view(),
        NewBranch {
            name: "r".into(),
            tools: vec!["read_file".into()],
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    log.push(recs);
    assert!(
        send_mail(
            &log.view(),
            "t",
            Some("main"),
            MailCategory::Tool,
            "bash".into(),
            now()
        )
        .is_err()
    );
    let (_, recs) = send_mail(
        &log.view(),
        "t",
        Some("r"),
        MailCategory::Tool,
        "grep".into(),
        now(),
    )
    .unwrap();
    log.push(recs);
    let (_, recs) = send_mail(
        &log.view(),
        "t",
        Some("r"),
        MailCategory::Model,
        serde_json::json!({"model": "m2"}),
        now(),
    )
    .unwrap();
    log.push(recs);
    let (n, recs) = collect_mail(&log.view(), Some("r"), None, now()).unwrap();
    assert_eq!(n, 2);
    log.push(recs);
    let r = log.view().branch("r").unwrap().branch.clone();
    assert_eq!(r.tools, vec!["read_file".to_string(), "grep".to_string()]);
    assert_eq!(r.model.as_deref(), Some("m2"));
}

#[test]
fn table_rows_have_the_columns() {
    let mut log = Log::new();
    log.say("main", Role::User, "hi");
    let rows = table_rows(&concat_messages(&log.view(), None, false, false).unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].role, "user");
    assert_eq!(rows[0].content, "hi");
    assert_eq!(rows[0].branch, "main");
}

#[test]
fn new_branch_takes_lionagis_system_parameters_and_user() {
    let mut log = Log::new();
    let at = now();
    let (b, recs) = new_branch(
        &log.view(),
        NewBranch {
            name: "coding".into(),
            system: Some("You code.".into()),
            system_sender: Some("lead".into()),
            system_datetime: Some(SystemDatetime::Now(true)),
            user: Some("ana".into()),
            ..Default::default()
        },
        at,
    )
    .unwrap();
    log.push(recs);
    let stamp = at.format("%Y-%m-%dT%H:%MZ").to_string();
    assert_eq!(b.system_datetime.as_deref(), Some(stamp.as_str()));
    assert_eq!(
        b.system.as_deref(),
        Some(format!("System Time: {stamp}\n\nYou code.").as_str())
    );
    assert_eq!(b.user.as_deref(), Some("ana"));
    // The system message is a row of the table, sent by system_sender.
    let rows =
        table_rows(&concat_messages(&log.view(), Some(&["coding".into()]), false, false).unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].role.as_str(), rows[0].sender.as_str()),
        ("system", "lead")
    );
    assert_eq!(rows[0].recipient, b.id.to_string());
    assert!(rows[0].content.starts_with("System Time: "));

    // A string is used as is; false stamps nothing.
    let (b, _) = new_branch(
        &log.view(),
        NewBranch {
            name: "fixed".into(),
            system_datetime: Some(SystemDatetime::At("Monday 9:00".into())),
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    assert_eq!(b.system.as_deref(), Some("System Time: Monday 9:00"));
    let (b, recs) = new_branch(
        &log.view(),
        NewBranch {
            name: "plain".into(),
            system_datetime: Some(SystemDatetime::Now(false)),
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    assert_eq!((b.system, recs.len()), (None, 1));
}

#[test]
fn a_deleted_branch_leaves_views_and_exports_but_not_the_log() {
    let mut log = Log::new();
    for name in ["kept", "left", "gone"] {
        let spec = NewBranch {
            name: name.into(),
            ..Default::default()
        };
        let (_, recs) = new_branch(&log.view(), spec, now()).unwrap();
        log.push(recs);
        log.say(name, Role::User, &format!("{name} text"));
    }
    // Mail to "kept", not yet collected: a removed sender's stays, a
    // deleted sender's goes with it.
    for from in ["left", "gone"] {
        let (_, mail) = send_mail(
            &log.view(),
            from,
            Some("kept"),
            MailCategory::Message,
            Value::String("hello".into()),
            now(),
        )
        .unwrap();
        log.push(mail);
    }
    log.push(remove_branch(&log.view(), "left", false).unwrap());
    log.push(remove_branch(&log.view(), "gone", true).unwrap());
    let view = log.view();
    assert!(view.branch("gone").is_none());
    assert_eq!(view.mail.len(), 1);
    assert_eq!(view.mail[0].mail.from.as_str(), "left");
    let deleted = deleted_message_seqs(&log.records);
    let gone: Vec<u64> = log
        .records
        .iter()
        .filter(|r| matches!(&r.kind, RecordKind::Message(m) if m.branch.as_str() == "gone"))
        .map(|r| r.seq)
        .collect();
    assert_eq!(deleted, gone.into_iter().collect());
    // A branch removed without delete keeps its messages out of the
    // deleted set; a new branch reusing the deleted id starts afresh.
    let (_, recs) = new_branch(
        &log.view(),
        NewBranch {
            name: "gone".into(),
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    log.push(recs);
    log.say("gone", Role::User, "new life");
    assert_eq!(deleted_message_seqs(&log.records).len(), 1);
}
