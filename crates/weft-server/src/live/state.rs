//! View-dependent changes (branches, mail, state) through [`Core::update`],
//! refusing those that disturb a busy branch, and keyed session state.

use super::*;

impl Core {
    /// Applies a view-dependent change to session `id`'s log: `change`
    /// gets the session's current view and the branches that run (or wait
    /// for) a turn, and returns a value and the records to append, or
    /// refuses. When this daemon has the session live, the change goes
    /// through that [`Session`]'s `update_with` (so its log head and branch
    /// caches stay right); otherwise through
    /// [`weft_core::log::update_session`]. Either way it is checked and
    /// appended at one head (a concurrent writer makes it re-read and
    /// re-check), and a change that would disturb a busy branch is refused
    /// with 409. Records are published to the session's streams.
    pub(crate) async fn update<T, F>(&self, id: &SessionId, mut change: F) -> Result<T, ApiError>
    where
        F: FnMut(&SessionView, &[BranchId]) -> Result<(T, Vec<RecordKind>), ApiError> + Send,
        T: Send,
    {
        let slot = self.slot(id);
        let live = slot.live.lock().await;
        self.meta(id).await?;
        // No turn can start while the slot's lock is held; a queued one
        // can, but its branch is listed already.
        let busy = slot.busy_branches();
        let mut refused: Option<ApiError> = None;
        let guarded = |view: &SessionView| {
            change(view, &busy)
                .and_then(|(value, kinds)| {
                    check_busy(view, &kinds, &busy)?;
                    Ok((value, kinds))
                })
                .map_err(|e| {
                    let err = SessionError::Invalid(e.detail.clone());
                    refused = Some(e);
                    err
                })
        };
        let result = match live.as_ref() {
            Some(session) => session.update_with(guarded).await,
            None => update_session(self.store().as_ref(), id, guarded).await,
        };
        drop(live);
        slot.feed.catch_up().await;
        slot.touch();
        match (result, refused) {
            (Ok(value), _) => Ok(value),
            (Err(_), Some(refused)) => Err(refused),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// The scope of state key `key` in session `meta` (the one its live
    /// session uses: its profile, its owner or else the server's user).
    pub(crate) fn state_scope(&self, meta: &SessionMeta, key: &str) -> StateScope {
        scope_of(
            key,
            &meta.profile,
            Some(meta.user.as_deref().unwrap_or(&self.ctx.user)),
        )
    }

    /// Sets (`Some`) or deletes (`None`) a state key. `temp:` keys are
    /// refused (422): they live only inside a turn, and a request is not
    /// one. Session keys are `state` records (through [`Core::update`]);
    /// `app:`/`user:` keys are shared state in the store (not in any log).
    pub(crate) async fn change_state(
        &self,
        id: &SessionId,
        key: &str,
        value: Option<Value>,
    ) -> Result<(), ApiError> {
        check_key(key).map_err(|e| ApiError::unprocessable(format!("key: {e}")))?;
        let meta = self.meta(id).await?;
        let mut delta = StateDelta::default();
        match &value {
            Some(v) => {
                delta.set.insert(key.to_string(), v.clone());
            }
            None => delta.delete.push(key.to_string()),
        }
        match self.state_scope(&meta, key) {
            StateScope::Temp => Err(ApiError::unprocessable(format!(
                "key: {key:?} is a temp: key; temp: state lives only inside a running turn and is never stored, and a request is not a turn: use a session key (no prefix) or an app:/user: key"
            ))),
            StateScope::Shared(ns) => {
                self.store().update_shared_state(&ns, &delta).await?;
                Ok(())
            }
            StateScope::Session => {
                self.update(id, |view, _| {
                    if value.is_none() && !view.state.contains_key(key) {
                        return Ok(((), Vec::new()));
                    }
                    Ok(((), vec![RecordKind::State(delta.clone())]))
                })
                .await
            }
        }
    }

    /// Removes every session key (a `state` record, so the clear survives
    /// a restart). Shared `app:`/`user:` keys stay; `temp:` keys belong to
    /// the running turn.
    pub(crate) async fn clear_state(&self, id: &SessionId) -> Result<(), ApiError> {
        self.update(id, |_, _| {
            Ok((
                (),
                vec![RecordKind::State(StateDelta {
                    clear: true,
                    ..Default::default()
                })],
            ))
        })
        .await
    }

    /// One state key's value (None: not set). `temp:` keys are read from
    /// the live session's running turn.
    pub(crate) async fn state_get(
        &self,
        id: &SessionId,
        key: &str,
    ) -> Result<Option<Value>, ApiError> {
        check_key(key).map_err(|e| ApiError::unprocessable(format!("key: {e}")))?;
        let meta = self.meta(id).await?;
        Ok(match self.state_scope(&meta, key) {
            StateScope::Temp => match self.live_session(id).await {
                Some(session) => session.state_get(key).await?,
                None => None,
            },
            StateScope::Shared(ns) => self.store().shared_state(&ns).await?.get(key).cloned(),
            StateScope::Session => self.store().view(id).await?.state.get(key).cloned(),
        })
    }

    /// All state the session sees: its own keys, the shared `app:` and
    /// `user:` keys, and (while a turn runs in this daemon) `temp:` keys.
    pub(crate) async fn state_all(&self, id: &SessionId) -> Result<Map<String, Value>, ApiError> {
        let meta = self.meta(id).await?;
        if let Some(session) = self.live_session(id).await {
            return Ok(session.state_all().await?);
        }
        let mut all = self.store().view(id).await?.state;
        for prefix in ["app:", "user:"] {
            if let StateScope::Shared(ns) = self.state_scope(&meta, prefix) {
                all.extend(self.store().shared_state(&ns).await?);
            }
        }
        Ok(all)
    }
}

/// Refuses (409) records that would disturb a branch running or waiting
/// for a turn: removing it, delivering mail to it, adding messages to it.
fn check_busy(view: &SessionView, kinds: &[RecordKind], busy: &[BranchId]) -> Result<(), ApiError> {
    if busy.is_empty() {
        return Ok(());
    }
    for kind in kinds {
        let (branch, why) = match kind {
            RecordKind::BranchRemoved { branch } => {
                (branch, "a branch is removed between its turns")
            }
            RecordKind::MailCollected { recipient, .. } => {
                (recipient, "mail is delivered to a branch between its turns")
            }
            RecordKind::Message(m) => (
                &m.branch,
                "messages are added to a branch between its turns",
            ),
            _ => continue,
        };
        if busy.contains(branch) {
            let name = view
                .branch(branch.as_str())
                .map_or_else(|| branch.to_string(), |b| b.branch.name.clone());
            return Err(ApiError::conflict(format!(
                "branch {name:?} of session {} is running a turn (or has prompts waiting): {why}; wait for it to finish, or cancel it",
                view.meta.id
            )));
        }
    }
    Ok(())
}
