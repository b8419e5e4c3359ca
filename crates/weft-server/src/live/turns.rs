//! Turns: making sessions live, accepting prompts (run, queue, interrupt),
//! resolving their branch, and running each branch's lane of prompts.
//!
//! A branch whose turn runs in another process (another node on a shared
//! store, a CLI: its store turn lock is live) follows the multitask policy
//! as a local turn does: `reject` is a 409 naming the holder, `enqueue`
//! starts the turn, which waits for the other process's lock (the
//! runtime's `lock_turn`), `interrupt` is a 409 (this server cannot cancel
//! another process's turn). The check and the start are not one atomic
//! step: two servers taking prompts at the same instant may both start,
//! and the later one then waits for the lock like an enqueued prompt.

use weft_core::lease::TurnHolder;

use super::*;

impl Core {
    /// The live session of `slot`, resumed from the store (or made, when
    /// `meta` is None) if it is not loaded. With `run_as` (a `/run` naming
    /// an agent), a live session built for another profile or sub-agent is
    /// rebuilt for this one (refused while it runs a turn): every agent
    /// runs its own plan on the session's shared log and state.
    async fn ensure_live(
        &self,
        slot: &Arc<Slot>,
        live: &mut Option<Session>,
        meta: Option<&SessionMeta>,
        create: Option<NewSession>,
        run_as: Option<NewSession>,
    ) -> Result<Session, ApiError> {
        let wanted = match (&run_as, meta) {
            (Some(r), Some(m)) => Some((
                r.profile.clone().unwrap_or_else(|| m.profile.clone()),
                r.agent.clone(),
            )),
            (None, Some(m)) => Some((m.profile.clone(), m.agent_name.clone())),
            (_, None) => None,
        };
        if let Some(session) = live.as_ref() {
            let current = lock(&slot.live_as).clone();
            let same = match (&wanted, &current) {
                (None, _) => true,
                (Some((profile, agent)), Some(c)) => &c.profile == profile && &c.agent == agent,
                (Some(_), None) => false,
            };
            if same {
                return Ok(session.clone());
            }
            if slot.is_running() {
                return Err(ApiError::conflict(format!(
                    "session {} is running a turn of another agent: wait for it to finish, then run this agent",
                    slot.id
                )));
            }
            // The session is not ended: another plan takes over its log.
            live.take();
        }
        let ctx = &self.ctx;
        // Tools run in the session's project: only inside the daemon's.
        if let Some(m) = meta {
            ctx.confine(&m.id, &m.project).map_err(ApiError::conflict)?;
        }
        let create = create.unwrap_or_default();
        let (profile, agent) = match (meta, wanted) {
            (Some(_), Some((profile, agent))) => (Some(profile), agent),
            (Some(m), None) => (Some(m.profile.clone()), m.agent_name.clone()),
            (None, _) => (create.profile.clone(), create.agent.clone()),
        };
        let planned = ctx.plans.plan(profile.as_deref()).await;
        // A session started with `--mount-plan` carries its plan.
        let planned = match (planned, meta.and_then(|m| MountPlan::recorded(&m.metadata))) {
            (Err(PlanError::UnknownProfile(_)), Some(Ok(plan))) => {
                Ok((plan, profile.clone().unwrap_or_default()))
            }
            (planned, _) => planned,
        };
        let (mut plan, profile_name) = planned.map_err(|e| match (meta, e) {
            (Some(m), PlanError::UnknownProfile(detail)) => ApiError::unprocessable(format!(
                "session {} was made with profile {:?}, which this server cannot load: {detail}",
                m.id, m.profile
            )),
            (_, e) => plan_error(e),
        })?;
        let unknown_agent = |agent: &str| {
            ApiError::not_found(format!(
                "unknown agent {agent:?}: GET /api/v1/agents lists the agents"
            ))
        };
        let mut config = match meta {
            Some(m) if run_as.is_some() => {
                // The agent asked for now, on the session's log.
                if let Some(agent) = &agent {
                    plan = plan.for_agent(agent).ok_or_else(|| unknown_agent(agent))?;
                }
                let mut as_run = m.clone();
                as_run.agent_name = None;
                let mut config = SessionConfig::resume(
                    &as_run,
                    plan,
                    self.store().clone(),
                    ctx.registry.clone(),
                )
                .config;
                config.agent_name = agent.clone();
                config
            }
            Some(m) => {
                let resumed =
                    SessionConfig::resume(m, plan, self.store().clone(), ctx.registry.clone());
                if let Some(agent) = resumed.lost_agent {
                    tracing::warn!(session = %slot.id, agent, "the session's sub-agent is not in its profile any more; running the profile");
                }
                resumed.config
            }
            None => {
                if let Some(agent) = &agent {
                    plan = plan.for_agent(agent).ok_or_else(|| unknown_agent(agent))?;
                }
                let mut config =
                    SessionConfig::new(plan, self.store().clone(), ctx.registry.clone());
                config.profile = profile_name.clone();
                config.agent_name = agent.clone();
                config.project = ctx.project.clone();
                config.user = Some(ctx.user.clone());
                config.tenant = create.tenant.clone();
                config
            }
        };
        config.session_id = Some(slot.id.clone());
        config.approval = ctx.approval.clone();
        // The session publishes its records and events to the feed the
        // slot's streams follow.
        config.feed = Some(slot.feed.clone());
        // Live sessions stay active when dropped idle: the API ends them.
        config.record_unclean_drop = false;
        let session = Session::new(config);
        session.initialize().await?;
        *lock(&slot.live_as) = Some(RunAs {
            profile: meta.map_or(profile_name, |m| {
                profile.clone().unwrap_or_else(|| m.profile.clone())
            }),
            agent,
        });
        *live = Some(session.clone());
        Ok(session)
    }

    /// Runs a prompt in session `id` under the multitask policy.
    pub(crate) async fn submit(
        &self,
        id: &SessionId,
        prompt: Prompt,
    ) -> Result<Submitted, ApiError> {
        if self.stopping.is_cancelled() {
            return Err(ApiError::unavailable(
                "the server is shutting down: no new turns are started",
            ));
        }
        if prompt.text.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "the prompt is empty: send the text to run",
            ));
        }
        let slot = self.slot(id);
        let mut live = slot.live.lock().await;
        let meta = match self.store().get(id).await {
            Ok(m) => Some(m),
            Err(StoreError::NotFound(_)) if prompt.create.is_some() => None,
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::not_found(format!("session {id} not found")));
            }
            Err(e) => return Err(e.into()),
        };
        if prompt.need == Need::Active
            && let Some(m) = &meta
            && m.status != SessionStatus::Active
        {
            let hint = if m.status == SessionStatus::Created {
                "start it first (POST .../start)"
            } else {
                "it has ended; fork it or start a new session"
            };
            return Err(ApiError::conflict(format!(
                "session {id} is {}: it takes prompts only while active; {hint}",
                m.status
            )));
        }
        let branch = self
            .resolve_branch(
                id,
                meta.as_ref(),
                prompt.branch.as_deref(),
                prompt.branch_in_path,
            )
            .await?;
        let session = self
            .ensure_live(
                &slot,
                &mut live,
                meta.as_ref(),
                prompt.create,
                prompt.run_as,
            )
            .await?;
        // A turn another process (another node on a shared store, a CLI)
        // runs on the branch follows the multitask policy too.
        let running_here = lock(&slot.turns)
            .lanes
            .get(&branch)
            .is_some_and(|l| l.current.is_some());
        let elsewhere = match &meta {
            Some(_) if !running_here => self.turn_elsewhere(id, &branch).await?,
            _ => None,
        };
        let turn = TurnId::new_v7();
        let (done_tx, done_rx) = if prompt.want_result {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            turn: turn.clone(),
            prompt: prompt.text,
            response_format: prompt.response_format,
            branch: branch.clone(),
            cancel: CancellationToken::new(),
            done: done_tx,
        };
        let accepted = {
            let mut t = lock(&slot.turns);
            if self.stopping.is_cancelled() {
                return Err(ApiError::unavailable(
                    "the server is shutting down: no new turns are started",
                ));
            }
            let lane = t.lanes.entry(branch.clone()).or_default();
            let running = lane.current.as_ref().map(|r| r.cancel.clone());
            match (running, prompt.policy) {
                (None, policy) => {
                    let accepted = match (&elsewhere, policy) {
                        (None, _) => Accepted::Started,
                        (Some(who), Multitask::Reject) => {
                            return Err(ApiError::conflict(format!(
                                "session {id} is running a turn on branch {branch} in {} (another process sharing the store): wait for it to finish, or pass ?multitask=enqueue (run after it); other branches can run turns meanwhile",
                                describe(who.as_ref())
                            )));
                        }
                        (Some(who), Multitask::Interrupt) => {
                            return Err(ApiError::conflict(format!(
                                "session {id} is running a turn on branch {branch} in {}, and this server cannot cancel a turn of another process: cancel it where it runs, or pass ?multitask=enqueue (run after it)",
                                describe(who.as_ref())
                            )));
                        }
                        // The turn waits for the other process's lock.
                        (Some(_), Multitask::Enqueue) => Accepted::Queued(1),
                    };
                    lane.current = Some(Running {
                        cancel: job.cancel.clone(),
                    });
                    slot.idle.send_replace(false);
                    tokio::spawn(run_turns(slot.clone(), session, job));
                    accepted
                }
                (Some(_), Multitask::Reject) => {
                    return Err(ApiError::conflict(format!(
                        "session {id} is running a turn on branch {branch}: wait for it to finish, or pass ?multitask=enqueue (run after it) or ?multitask=interrupt (cancel it and run this); other branches can run turns meanwhile"
                    )));
                }
                (Some(_), Multitask::Enqueue) => {
                    let ahead = lane.queue.len() + 1;
                    lane.queue.push_back(job);
                    Accepted::Queued(ahead)
                }
                (Some(running), Multitask::Interrupt) => {
                    running.cancel();
                    lane.queue.push_front(job);
                    Accepted::Interrupting
                }
            }
        };
        slot.touch();
        Ok(Submitted {
            turn,
            branch,
            accepted,
            done: done_rx,
        })
    }

    /// The branch a prompt runs on: `wanted` (id or name) or the default
    /// branch. An unknown branch is a 404 when it came from the path, else
    /// a 422 naming the `branch` field.
    async fn resolve_branch(
        &self,
        id: &SessionId,
        meta: Option<&SessionMeta>,
        wanted: Option<&str>,
        in_path: bool,
    ) -> Result<BranchId, ApiError> {
        let default = meta.map_or_else(BranchId::main, |m| m.default_branch.clone());
        let Some(wanted) = wanted.filter(|b| !b.trim().is_empty()) else {
            return Ok(default);
        };
        if wanted == default.as_str() {
            return Ok(default);
        }
        let found = match meta {
            Some(_) => self
                .store()
                .view(id)
                .await?
                .branch(wanted)
                .map(|b| b.branch.id.clone()),
            None => None,
        };
        found.ok_or_else(|| ApiError::unknown_branch(id, wanted, (!in_path).then_some("branch")))
    }

    /// Who runs a turn on `branch` of `id` in another process (another
    /// node sharing the store, a CLI): `Some(holder)` while its turn lock
    /// is live (the holder when the store knows it), None when nobody
    /// does. Called only while this daemon runs no turn on the branch, so
    /// a live lock is another process's.
    async fn turn_elsewhere(
        &self,
        id: &SessionId,
        branch: &BranchId,
    ) -> Result<Option<Option<TurnHolder>>, ApiError> {
        match self.store().turn_locks(id).await {
            Ok(locks) => Ok(locks
                .into_iter()
                .find(|l| l.live && &l.branch == branch)
                .map(|l| l.holder)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The live session of `id`, if this daemon has one loaded.
    pub(crate) async fn live_session(&self, id: &SessionId) -> Option<Session> {
        let slot = self.peek(id)?;
        let live = slot.live.lock().await;
        live.clone()
    }

    /// Whether a turn runs on `branch` of `id`, and how many prompts wait
    /// for it.
    pub(crate) fn branch_status(&self, id: &SessionId, branch: &BranchId) -> (bool, usize) {
        self.peek(id)
            .map_or((false, 0), |s| s.branch_status(branch))
    }
}

/// "process 12 on host h (since …)", or "another process".
fn describe(holder: Option<&TurnHolder>) -> String {
    holder.map_or_else(|| "another process".to_string(), TurnHolder::describe)
}

/// Runs `job`, then the prompts queued on its branch, one at a time.
async fn run_turns(slot: Arc<Slot>, session: Session, mut job: Job) {
    let branch = job.branch.clone();
    loop {
        let result = run_one(&slot, &session, &job).await;
        if let Err(e) = &result
            && !e.is_cancelled()
        {
            tracing::warn!(session = %slot.id, branch = %branch, turn = %job.turn, error = %e, "turn failed");
        }
        if let Some(done) = job.done.take() {
            let _ = done.send(result);
        }
        slot.touch();
        let next = {
            let mut t = lock(&slot.turns);
            let next = t.lanes.get_mut(&branch).and_then(|l| l.queue.pop_front());
            match next {
                Some(next) => {
                    if let Some(lane) = t.lanes.get_mut(&branch) {
                        lane.current = Some(Running {
                            cancel: next.cancel.clone(),
                        });
                    }
                    Some(next)
                }
                None => {
                    t.lanes.remove(&branch);
                    if !t.running() {
                        slot.idle.send_replace(true);
                    }
                    None
                }
            }
        };
        match next {
            Some(next) => job = next,
            None => break,
        }
    }
}

/// Runs one prompt as a kernel turn under the job's id; when the job is
/// cancelled, cancels the turn at once, whether it has started or not (it
/// records what it has and answers started tool calls): only this turn, or
/// every turn when all are being stopped.
async fn run_one(slot: &Slot, session: &Session, job: &Job) -> TurnResult {
    if job.cancel.is_cancelled() {
        return Err(SessionError::Cancelled);
    }
    let request = TurnRequest::new(job.prompt.clone())
        .on_branch(Some(job.branch.as_str()))
        .with_id(job.turn.clone())
        .with_response_format(job.response_format.clone());
    let handle = session.start_turn_with(request).await?;
    let canceller = handle.canceller();
    let result = handle.answer();
    tokio::pin!(result);
    tokio::select! {
        result = &mut result => return result,
        _ = job.cancel.cancelled() => {}
    }
    if lock(&slot.turns).stop_all {
        session.cancel(CancelMode::Immediate).await;
    } else {
        canceller.request(CancelMode::Immediate);
    }
    result.await
}
