//! Branches and mail: resolving and caching branch state, and the
//! view-dependent branch and mail operations applied through the log.

use std::sync::Arc;

use serde_json::Value;

use super::{Mounted, Session};
use crate::branches;
use crate::context::ContextManager;
use crate::error::SessionError;
use crate::id::BranchId;
use crate::message::{META_BRANCH_SYSTEM, Message};
use crate::record::RecordKind;
use crate::session::Branch;
use crate::store::StoreError;
use crate::view::SessionView;

impl Session {
    /// Applies a view-dependent change atomically through this session's
    /// log (see [`crate::log::update_session`]); cached branch state is
    /// reloaded before the next turn.
    pub async fn update_with<T, F>(&self, mut change: F) -> Result<T, SessionError>
    where
        F: FnMut(&SessionView) -> Result<(T, Vec<RecordKind>), SessionError> + Send,
        T: Send,
    {
        let log = &self.mounted()?.log;
        let mut attempt = 0;
        loop {
            let head = log.head().await;
            let records = self
                .store()
                .read(&self.inner.id, 1, Some(head as usize))
                .await?;
            let view = SessionView::from_records(&records).map_err(StoreError::from)?;
            let (value, kinds) = change(&view)?;
            if kinds.is_empty() {
                return Ok(value);
            }
            match log.append_at(head, kinds).await {
                Ok(_) => {
                    self.invalidate_branches().await;
                    return Ok(value);
                }
                Err(e) if e.is_conflict() && attempt < crate::store::UPDATE_ATTEMPTS => {
                    attempt += 1;
                    if log.head().await == head {
                        // Another process wrote: take its records.
                        log.refresh().await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes a branch.
    pub async fn new_branch(&self, spec: branches::NewBranch) -> Result<Branch, SessionError> {
        self.update_with(|view| {
            Ok(branches::new_branch(
                view,
                spec.clone(),
                chrono::Utc::now(),
            )?)
        })
        .await
    }

    /// Removes a branch (the first remaining one becomes the default if it
    /// was the default); with `delete` its messages also leave every view
    /// and export ([`branches::remove_branch`]).
    pub async fn remove_branch(&self, id_or_name: &str, delete: bool) -> Result<(), SessionError> {
        self.update_with(|view| Ok(((), branches::remove_branch(view, id_or_name, delete)?)))
            .await
    }

    /// Rewinds (undoes) the last `turns` turns of a branch (the default
    /// when None): they leave its conversation — the model's context, the
    /// transcript, exports — and stay in the log ([`crate::rewind`]).
    /// Refused while the session runs a turn on that branch.
    pub async fn rewind(
        &self,
        branch: Option<&str>,
        turns: u64,
    ) -> Result<crate::rewind::Rewound, SessionError> {
        let running: Vec<BranchId> = super::lock(&self.inner.running)
            .values()
            .map(|(b, _)| b.clone())
            .collect();
        self.update_with(|view| {
            let (done, kinds) = crate::rewind::rewind(view, branch, turns)?;
            if running.contains(&done.branch) {
                return Err(SessionError::Invalid(format!(
                    "branch {} is running a turn: wait for it to end (or cancel it) before rewinding",
                    done.branch
                )));
            }
            Ok((done, kinds))
        })
        .await
    }

    /// Makes a branch the default.
    pub async fn change_default_branch(&self, id_or_name: &str) -> Result<(), SessionError> {
        self.update_with(|view| Ok(((), branches::change_default_branch(view, id_or_name)?)))
            .await
    }

    /// A branch and its messages.
    pub async fn get_branch(
        &self,
        id_or_name: &str,
    ) -> Result<crate::view::BranchView, SessionError> {
        let view = self.view().await?;
        view.branch(id_or_name)
            .cloned()
            .ok_or_else(|| branches::BranchError::UnknownBranch(id_or_name.to_string()).into())
    }

    /// Clones a branch into a new one (LionAGI `split`).
    pub async fn split(&self, source: &str, name: Option<String>) -> Result<Branch, SessionError> {
        self.update_with(|view| {
            Ok(branches::split(
                view,
                source,
                name.clone(),
                chrono::Utc::now(),
            )?)
        })
        .await
    }

    /// The messages of several branches in log order (LionAGI
    /// `concat_messages`).
    pub async fn concat_messages(
        &self,
        branch_names: Option<&[String]>,
        exclude_clone: bool,
        exclude_load: bool,
    ) -> Result<Vec<branches::SeqMessage>, SessionError> {
        let view = self.view().await?;
        Ok(branches::concat_messages(
            &view,
            branch_names,
            exclude_clone,
            exclude_load,
        )?)
    }

    /// Sends mail from one branch to another (`to = None`: broadcast).
    pub async fn send_mail(
        &self,
        from: &str,
        to: Option<&str>,
        category: crate::session::MailCategory,
        item: Value,
    ) -> Result<crate::session::Mail, SessionError> {
        self.update_with(|view| {
            Ok(branches::send_mail(
                view,
                from,
                to,
                category,
                item.clone(),
                chrono::Utc::now(),
            )?)
        })
        .await
    }

    /// Delivers waiting mail (`to`/`from` None: every branch); returns how
    /// many deliveries were made.
    pub async fn collect_mail(
        &self,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<usize, SessionError> {
        self.update_with(|view| Ok(branches::collect_mail(view, to, from, chrono::Utc::now())?))
            .await
    }

    /// The id of a branch given by id or name.
    pub(super) async fn resolve_branch(&self, id_or_name: &str) -> Result<BranchId, SessionError> {
        {
            let contexts = self.inner.contexts.lock().await;
            let cached = contexts
                .values()
                .find(|(b, _)| b.id.as_str() == id_or_name)
                .or_else(|| contexts.values().find(|(b, _)| b.name == id_or_name));
            if let Some((b, _)) = cached {
                return Ok(b.id.clone());
            }
        }
        let view = self.store().view(&self.inner.id).await?;
        view.branch(id_or_name)
            .map(|b| b.branch.id.clone())
            .ok_or_else(|| {
                SessionError::Invalid(format!(
                    "unknown branch {id_or_name:?} in session {}: `weft branch list {}` shows its branches",
                    self.inner.id, self.inner.id
                ))
            })
    }

    /// The branch's settings and context manager, cached after the first
    /// use (the history is loaded from the log then: `fresh` is true).
    pub(super) async fn branch_state(
        &self,
        id: &BranchId,
        mounted: &Mounted,
    ) -> Result<(Branch, Arc<dyn ContextManager>, bool), SessionError> {
        let mut contexts = self.inner.contexts.lock().await;
        if let Some((b, c)) = contexts.get(id) {
            return Ok((b.clone(), c.clone(), false));
        }
        let mut view = self.store().view(&self.inner.id).await?;
        let branch = view.take_branch(id.as_str()).ok_or_else(|| {
            SessionError::Invalid(format!(
                "branch {id} of session {} was removed: `weft branch list {}` shows its branches",
                self.inner.id, self.inner.id
            ))
        })?;
        let cfg = &self.inner.config;
        let context = cfg
            .registry
            .context(&cfg.plan.session.context, &mounted.env)?;
        // The view is ours: its messages move into the context, uncopied.
        // The branch's system message row is not sent: the turn gives the
        // model the branch's system prompt.
        let history: Vec<Message> = branch
            .messages
            .into_iter()
            .map(|m| m.message)
            .filter(|m| !m.flag(META_BRANCH_SYSTEM))
            .collect();
        context.set_messages(history).await;
        contexts.insert(
            branch.branch.id.clone(),
            (branch.branch.clone(), context.clone()),
        );
        Ok((branch.branch, context, true))
    }

    /// Forgets cached branch state (after the branches changed), so the next
    /// turn reloads it from the log.
    pub async fn invalidate_branches(&self) {
        self.inner.contexts.lock().await.clear();
    }
}
