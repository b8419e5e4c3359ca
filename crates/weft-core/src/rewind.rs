//! Rewind (undo): the last turns of a branch leave its conversation.
//!
//! A rewind is a `rewind` record naming the branch and the last seq that
//! stays in it ([`RecordKind::Rewind`]); the log keeps every record, the
//! branch's view ([`crate::view::SessionView`]) — hence the model's
//! context, the transcript and the exports — drops the branch's messages
//! after it. A turn starts at a user message of the branch, so rewinding
//! `n` turns cuts just before the `n`-th last of them.
//!
//! This module computes the record from a view; applying it (atomically,
//! refused while the branch runs a turn) is the caller's: the runtime's
//! [`Session::rewind`](crate::Session::rewind), the daemon, the CLI.

use serde::{Deserialize, Serialize};

use crate::branches::BranchError;
use crate::id::BranchId;
use crate::message::Role;
use crate::record::RecordKind;
use crate::view::SessionView;

/// What a rewind did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewound {
    /// The branch rewound.
    pub branch: BranchId,
    /// The last seq that stays in its conversation.
    pub to_seq: u64,
    /// How many turns left it.
    pub turns: u64,
    /// How many messages left it.
    pub messages: usize,
}

/// The record that rewinds the last `turns` turns of branch `id_or_name`
/// (the default branch when None), and what it does. Refused with a clear
/// message when the branch is unknown, `turns` is 0, or the branch has
/// fewer turns.
pub fn rewind(
    view: &SessionView,
    id_or_name: Option<&str>,
    turns: u64,
) -> Result<(Rewound, Vec<RecordKind>), BranchError> {
    let branch = match id_or_name {
        Some(name) => view.branch(name),
        None => view.default_branch(),
    }
    .ok_or_else(|| BranchError::UnknownBranch(id_or_name.unwrap_or("(default)").to_string()))?;
    let name = &branch.branch.name;
    if turns == 0 {
        return Err(BranchError::Invalid(
            "rewind at least one turn (turns must be 1 or more)".into(),
        ));
    }
    let starts: Vec<usize> = branch
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.message.role == Role::User)
        .map(|(i, _)| i)
        .collect();
    let have = starts.len() as u64;
    if have == 0 {
        return Err(BranchError::Invalid(format!(
            "branch {name} has no turns to rewind"
        )));
    }
    if turns > have {
        return Err(BranchError::Invalid(format!(
            "branch {name} has {have} turn(s): rewind 1 to {have}"
        )));
    }
    let cut = starts[(have - turns) as usize];
    let to_seq = branch.messages[cut].seq.saturating_sub(1);
    let rewound = Rewound {
        branch: branch.branch.id.clone(),
        to_seq,
        turns,
        messages: branch.messages.len() - cut,
    };
    let record = RecordKind::Rewind {
        branch: branch.branch.id.clone(),
        to_seq,
    };
    Ok((rewound, vec![record]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::message::Message;
    use crate::record::Record;
    use crate::session::{Project, SessionMeta};

    fn view_with(turns: usize) -> (Vec<Record>, SessionView) {
        let meta = SessionMeta::new(SessionId::new_v7(), Project::current(), "base");
        let mut kinds = vec![RecordKind::SessionCreated(Box::new(meta))];
        for i in 0..turns {
            for (role, text) in [
                (Role::User, format!("q{i}")),
                (Role::Assistant, format!("a{i}")),
            ] {
                kinds.push(RecordKind::message(Message::text(
                    BranchId::main(),
                    role,
                    text,
                )));
            }
        }
        let records = Record::batch(0, kinds);
        let view = SessionView::from_records(&records).expect("view");
        (records, view)
    }

    fn texts(view: &SessionView) -> Vec<String> {
        view.messages("main")
            .iter()
            .map(|m| m.text_content())
            .collect()
    }

    #[test]
    fn rewinding_drops_the_last_turns_from_the_view_only() {
        let (mut records, view) = view_with(3);
        let (done, kinds) = rewind(&view, None, 2).expect("rewind");
        assert_eq!(done.turns, 2);
        assert_eq!(done.messages, 4);
        assert_eq!(done.to_seq, 3);
        let head = records.len() as u64;
        records.extend(Record::batch(head, kinds));
        let after = SessionView::from_records(&records).expect("view");
        assert_eq!(texts(&after), ["q0", "a0"]);
        // Later turns come after the rewind and stay.
        let head = records.len() as u64;
        records.extend(Record::batch(
            head,
            [RecordKind::message(Message::text(
                BranchId::main(),
                Role::User,
                "q-new",
            ))],
        ));
        let later = SessionView::from_records(&records).expect("view");
        assert_eq!(texts(&later), ["q0", "a0", "q-new"]);
        // And can be rewound in turn.
        let (again, _) = rewind(&later, Some("main"), 1).expect("rewind again");
        assert_eq!(again.messages, 1);
    }

    #[test]
    fn refusals_say_what_is_possible() {
        let (_, view) = view_with(2);
        let too_many = rewind(&view, None, 3).expect_err("too many");
        assert!(too_many.to_string().contains("rewind 1 to 2"), "{too_many}");
        let zero = rewind(&view, None, 0).expect_err("zero");
        assert!(zero.to_string().contains("at least one"), "{zero}");
        let unknown = rewind(&view, Some("nope"), 1).expect_err("unknown");
        assert!(matches!(unknown, BranchError::UnknownBranch(_)));
        let (_, empty) = view_with(0);
        let none = rewind(&empty, None, 1).expect_err("none");
        assert!(none.to_string().contains("no turns"), "{none}");
    }
}
