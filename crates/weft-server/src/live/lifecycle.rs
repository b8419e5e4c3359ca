//! Server-side writes and lifecycle transitions: appending decided
//! batches, status transitions, terminate, delete, messages and metadata.

use super::*;

impl Core {
    /// Appends the batch `decide` gives, decided against the head it
    /// follows (the slot's lock must be held; `live` is what it guards),
    /// and publishes the records. Through the live session's log when
    /// there is one, else straight to the store; either way a conflict
    /// with another process takes its records in and asks `decide` again
    /// (`weft_core::log::append_checked`), so a transition or a message
    /// is never written after a record that forbids it.
    async fn write<F>(
        &self,
        slot: &Slot,
        live: &Option<Session>,
        decide: F,
    ) -> Result<Vec<Record>, ApiError>
    where
        F: FnMut(&SessionMeta, &[Record]) -> Result<Vec<RecordKind>, StoreError> + Send,
    {
        self.write_from(slot, live, None, decide).await
    }

    /// [`Core::write`], starting from `known` (the session as just read
    /// under the slot's lock) instead of reading it again when there is no
    /// live session; a stale `known` costs a conflict and a retry, never a
    /// wrong write.
    async fn write_from<F>(
        &self,
        slot: &Slot,
        live: &Option<Session>,
        known: Option<SessionMeta>,
        decide: F,
    ) -> Result<Vec<Record>, ApiError>
    where
        F: FnMut(&SessionMeta, &[Record]) -> Result<Vec<RecordKind>, StoreError> + Send,
    {
        let store = self.store();
        let records = match live {
            Some(session) => {
                slot.set_written(None, false);
                session.log()?.append_if(decide).await?.0
            }
            None => {
                let mut known = match known {
                    Some(meta) => meta,
                    None => store.get(&slot.id).await?,
                };
                match append_checked(&**store, &slot.id, &mut known, None, decide).await {
                    Ok((records, others)) => {
                        slot.set_written(Some(known), !others.is_empty());
                        records
                    }
                    Err(e) => {
                        slot.set_written(None, e.is_conflict());
                        return Err(e.into());
                    }
                }
            }
        };
        slot.feed.publish(&records).await;
        Ok(records)
    }

    /// Writes the transition to `to`, decided at the head it follows
    /// (refused with 409 when the lifecycle does not allow it there).
    async fn write_transition(
        &self,
        slot: &Slot,
        live: &Option<Session>,
        to: SessionStatus,
        error: Option<String>,
        details: Option<Value>,
    ) -> Result<(), ApiError> {
        self.write(slot, live, |session, _| {
            transition_batch(session, to, error.clone(), details.clone(), |s| {
                lifecycle_detail(s, to)
            })
        })
        .await?;
        Ok(())
    }

    /// A lifecycle transition requested over the API (not terminate).
    pub(crate) async fn transition(
        &self,
        id: &SessionId,
        to: SessionStatus,
        error: Option<String>,
        details: Option<Value>,
    ) -> Result<SessionMeta, ApiError> {
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let meta = self.meta(id).await?;
        if !meta.status.can_become(to) {
            return Err(ApiError::conflict(lifecycle_detail(&meta, to)));
        }
        if slot.is_running() {
            return Err(ApiError::conflict(format!(
                "session {id} is {} and running a turn: wait for it to finish, or terminate it (POST .../terminate)",
                meta.status
            )));
        }
        // A turn another process runs on it (a CLI) would lose what it
        // streams if the session ended under it.
        if let Some(other) = self
            .store()
            .turn_locks(id)
            .await?
            .into_iter()
            .find(|l| l.live)
        {
            let who = other
                .holder
                .map_or_else(|| "another process".to_string(), |h| h.describe());
            return Err(ApiError::conflict(format!(
                "session {id} is running a turn on branch {} in {who}: wait for it to finish",
                other.branch
            )));
        }
        self.write_transition(&slot, &live, to, error, details)
            .await?;
        if to.is_ended()
            && let Some(session) = live.take()
            && let Err(e) = session.cleanup().await
        {
            tracing::warn!(session = %id, error = %e, "cleanup after {to} failed");
        }
        slot.touch();
        self.meta(id).await
    }

    /// Cancels the running turn, drops queued prompts and waits (bounded)
    /// until no turn runs.
    pub(super) async fn stop_turns(&self, slot: &Slot) {
        let (cancels, queued) = {
            let mut t = lock(&slot.turns);
            t.stop_all = true;
            let cancels: Vec<CancellationToken> = t
                .lanes
                .values()
                .filter_map(|l| l.current.as_ref().map(|r| r.cancel.clone()))
                .collect();
            let queued: Vec<Job> = t
                .lanes
                .values_mut()
                .flat_map(|l| l.queue.drain(..))
                .collect();
            (cancels, queued)
        };
        for job in queued {
            if let Some(done) = job.done {
                let _ = done.send(Err(SessionError::Cancelled));
            }
        }
        if !cancels.is_empty() {
            for cancel in &cancels {
                cancel.cancel();
            }
            let mut idle = slot.idle.subscribe();
            let wait = self.config.shutdown_grace.max(Duration::from_secs(1));
            if tokio::time::timeout(wait, idle.wait_for(|idle| *idle))
                .await
                .is_err()
            {
                tracing::warn!(session = %slot.id, "the cancelled turns did not stop in {wait:?}");
            }
        }
        lock(&slot.turns).stop_all = false;
    }

    /// `terminate`: cancels a running turn (its partial state is
    /// recorded), then created|active → terminated.
    pub(crate) async fn terminate(&self, id: &SessionId) -> Result<SessionMeta, ApiError> {
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let meta = self.meta(id).await?;
        if !meta.status.can_become(SessionStatus::Terminated) {
            return Err(ApiError::conflict(lifecycle_detail(
                &meta,
                SessionStatus::Terminated,
            )));
        }
        self.stop_turns(&slot).await;
        let meta = self.meta(id).await?;
        if !meta.status.can_become(SessionStatus::Terminated) {
            return Err(ApiError::conflict(lifecycle_detail(
                &meta,
                SessionStatus::Terminated,
            )));
        }
        self.write_transition(&slot, &live, SessionStatus::Terminated, None, None)
            .await?;
        if let Some(session) = live.take()
            && let Err(e) = session.cleanup().await
        {
            tracing::warn!(session = %id, error = %e, "cleanup after terminate failed");
        }
        self.meta(id).await
    }

    /// Deletes a session (and, if asked, its descendants), stopping any
    /// turn first; its streams end.
    pub(crate) async fn delete(&self, id: &SessionId, with_children: bool) -> Result<(), ApiError> {
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        self.meta(id).await?;
        self.stop_turns(&slot).await;
        live.take();
        let removed = self
            .store()
            .delete(
                id,
                DeleteOptions {
                    with_children,
                    unless_active: false,
                },
            )
            .await?;
        drop(live);
        let mut slots = lock(&self.slots);
        slots.remove(id);
        for other in removed {
            slots.remove(&other);
        }
        Ok(())
    }

    /// Appends `message` to the transcript without running the model, on
    /// `branch` (None: the default branch; the message's own is replaced).
    /// The session must be active and idle; a live session is dropped so
    /// the next turn reloads its history.
    pub(crate) async fn append_message(
        &self,
        id: &SessionId,
        branch: Option<&str>,
        mut message: weft_core::Message,
    ) -> Result<(u64, weft_core::Message), ApiError> {
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let named = branch.filter(|b| !b.is_empty());
        let written = slot.written();
        // Another process writes the session lately (this daemon's hint is
        // behind) and nothing here does: append where the head is, guarded
        // by what this daemon saw last (active, its default branch),
        // without reading the head first (one statement on PostgreSQL). A
        // guard that no longer holds takes the route below.
        if live.is_none()
            && named.is_none()
            && written.is_none()
            && !slot.is_running()
            && let Some(seen) = slot
                .last_written()
                .filter(|m| m.status == SessionStatus::Active)
        {
            message.branch = seen.default_branch.clone();
            let guard = HeadGuard {
                status: SessionStatus::Active,
                default_branch: seen.default_branch.clone(),
            };
            let batch = vec![RecordKind::message(message.clone())];
            match self.store().append_guarded(id, &guard, batch).await {
                Ok(Some((records, meta))) => {
                    let seq = records.last().map_or(meta.last_seq, |r| r.seq);
                    let others = meta.last_seq != seen.last_seq + records.len() as u64;
                    slot.set_written(Some(meta), others);
                    slot.feed.publish(&records).await;
                    slot.touch();
                    return Ok((seq, message));
                }
                Ok(None) => {}
                Err(e) => {
                    slot.set_written(None, e.is_conflict());
                    return Err(session_error(id, e));
                }
            }
        }
        // What this daemon's last write left, when it says the session is
        // active and nothing else writes it here: the append below checks
        // it is still the head (anything written since by another process
        // is a conflict, folded in before the message is decided again).
        let meta = match written {
            Some(meta) if live.is_none() && meta.status == SessionStatus::Active => meta,
            _ => self.meta(id).await?,
        };
        let branch = match named {
            None => meta.default_branch.clone(),
            Some(b) => {
                let branch = BranchId::parse(b)
                    .map_err(|e| ApiError::unprocessable(format!("branch: {e}")))?;
                if branch == meta.default_branch {
                    branch
                } else {
                    let view = self.store().view(id).await?;
                    match view.branch(b) {
                        Some(v) => v.branch.id.clone(),
                        None => {
                            return Err(ApiError::unprocessable(format!(
                                "branch: session {id} has no branch {b:?}"
                            )));
                        }
                    }
                }
            }
        };
        message.branch = branch;
        if meta.status != SessionStatus::Active {
            return Err(ApiError::conflict(format!(
                "session {id} is {}: messages can be added only while it is active{}",
                meta.status,
                if meta.status == SessionStatus::Created {
                    "; start it first (POST .../start)"
                } else {
                    ""
                }
            )));
        }
        if slot.is_running() {
            return Err(ApiError::conflict(format!(
                "session {id} is running a turn: add messages between turns"
            )));
        }
        let next = meta.last_seq + 1;
        let records = self
            .write_from(&slot, &live, Some(meta), |session, _| {
                if session.status == SessionStatus::Active {
                    let mut message = message.clone();
                    if named.is_none() {
                        // Another process may have moved the default since.
                        message.branch = session.default_branch.clone();
                    }
                    Ok(vec![RecordKind::message(message)])
                } else {
                    Err(StoreError::Refused(format!(
                        "session {id} is {}: messages can be added only while it is active",
                        session.status
                    )))
                }
            })
            .await?;
        live.take();
        slot.touch();
        // The message as written (its branch decided at the head).
        let written = records.into_iter().find_map(|r| match r.kind {
            RecordKind::Message(m) => Some((r.seq, *m)),
            _ => None,
        });
        Ok(written.unwrap_or((next, message)))
    }

    /// Changes name/description (through the live session's log if any).
    pub(crate) async fn update_meta(
        &self,
        id: &SessionId,
        patch: weft_core::record::MetaPatch,
    ) -> Result<SessionMeta, ApiError> {
        let slot = self.slot(id);
        let live = slot.live.lock().await;
        let meta = self.meta(id).await?;
        if patch.is_empty() {
            return Ok(meta);
        }
        self.write(&slot, &live, |_, _| {
            Ok(vec![RecordKind::Meta(patch.clone())])
        })
        .await?;
        self.meta(id).await
    }
}
