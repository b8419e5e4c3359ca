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

    /// Sets (`Some`) or deletes (`None`) a state key, by the rule every
    /// front end shares ([`weft_core::stored`]). `temp:` keys are refused
    /// (422): they live only inside a turn, and a request is not one.
    /// Session keys are `state` records (through [`Core::update`]);
    /// `app:`/`user:` keys are shared state in the store (not in any log).
    pub(crate) async fn change_state(
        &self,
        id: &SessionId,
        key: &str,
        value: Option<Value>,
    ) -> Result<(), ApiError> {
        let meta = self.meta(id).await?;
        let deleting = value.is_none();
        let Some(delta) = stored::change(self.store().as_ref(), &meta, key, value)
            .await
            .map_err(state_error)?
        else {
            return Ok(());
        };
        self.update(id, |view, _| {
            if deleting && !view.state.contains_key(key) {
                return Ok(((), Vec::new()));
            }
            Ok(((), vec![RecordKind::State(delta.clone())]))
        })
        .await
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
        let meta = self.meta(id).await?;
        if stored::is_temp(key) {
            return Ok(match self.live_session(id).await {
                Some(session) => session.state_get(key).await?,
                None => None,
            });
        }
        stored::get(self.store().as_ref(), &meta, key)
            .await
            .map_err(state_error)
    }

    /// All state the session sees: its own keys, the shared `app:` and
    /// `user:` keys, and (while a turn runs in this daemon) `temp:` keys.
    pub(crate) async fn state_all(&self, id: &SessionId) -> Result<Map<String, Value>, ApiError> {
        let meta = self.meta(id).await?;
        if let Some(session) = self.live_session(id).await {
            return Ok(session.state_all().await?);
        }
        stored::all(self.store().as_ref(), &meta)
            .await
            .map_err(state_error)
    }
}

/// A refused key is a 422 naming the key.
fn state_error(e: StateError) -> ApiError {
    match e {
        StateError::Store(e) => e.into(),
        other => ApiError::unprocessable(format!("key: {other}")),
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
            RecordKind::BranchRemoved { branch, .. } => {
                (branch, "a branch is removed between its turns")
            }
            RecordKind::MailCollected { recipient, .. } => {
                (recipient, "mail is delivered to a branch between its turns")
            }
            RecordKind::Rewind { branch, .. } => (branch, "a branch is rewound between its turns"),
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
