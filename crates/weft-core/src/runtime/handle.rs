//! A started turn as the caller holds it: [`TurnRequest`] (what to run),
//! [`TurnHandle`] (its id and branch, cancel it, follow it, await its
//! answer) and [`TurnEvents`] (the turn's part of the session's feed).
//!
//! The handle exists from the moment [`super::Session::start_turn`] returns:
//! the turn's id and cancellation are allocated before it runs anything, so
//! a cancel is never lost, however early it comes. Dropping a handle
//! detaches the turn (it runs to its end); [`super::Session::execute`]
//! cancels its turn when its future is dropped instead.

use std::sync::Arc;

use serde_json::Value;

use crate::error::SessionError;
use crate::feed::{FeedError, FeedItem, FeedReceiver};
use crate::hooks::events;
use crate::id::{BranchId, TurnId};
use crate::orchestrator::TurnCancel;
use crate::structured::ResponseFormat;

use super::CancelMode;

/// What a turn runs: a prompt, on a branch, optionally with an id chosen
/// by the caller (a daemon that answers with the id before the turn runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnRequest {
    /// The prompt.
    pub prompt: String,
    /// The branch (id or name; None: the session's default branch).
    pub branch: Option<String>,
    /// The turn's id (None: a fresh one). It must not be the id of a turn
    /// running in the session.
    pub id: Option<TurnId>,
    /// The format the answer must have (None: free text); see
    /// [`crate::structured`].
    pub response_format: Option<ResponseFormat>,
}

/// A turn's answer: its text and, for a structured turn, the validated
/// JSON value.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnAnswer {
    /// The final text.
    pub text: String,
    /// The answer's JSON value, valid against the turn's response schema
    /// (None for free-text turns).
    pub structured: Option<Value>,
}

impl TurnRequest {
    /// A request to run `prompt` on the default branch under a fresh id.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            branch: None,
            id: None,
            response_format: None,
        }
    }

    /// Asks for an answer in `format` (JSON valid against its schema).
    pub fn with_response_format(mut self, format: Option<ResponseFormat>) -> Self {
        self.response_format = format;
        self
    }

    /// Runs it on `branch` (id or name; None: the default branch).
    pub fn on_branch(mut self, branch: Option<impl Into<String>>) -> Self {
        self.branch = branch.map(Into::into);
        self
    }

    /// Gives the turn the id `id`.
    pub fn with_id(mut self, id: TurnId) -> Self {
        self.id = Some(id);
        self
    }
}

impl TurnCancel {
    /// Requests cancellation: [`CancelMode::Graceful`] stops before the next
    /// provider call, [`CancelMode::Immediate`] also aborts the provider
    /// stream and running tools. A turn that has not started yet does not
    /// start.
    pub fn request(&self, mode: CancelMode) {
        self.graceful.cancel();
        if mode == CancelMode::Immediate {
            self.immediate.cancel();
        }
    }
}

/// A running (or finished) turn. See the module docs.
#[derive(Debug)]
pub struct TurnHandle {
    pub(super) id: TurnId,
    pub(super) branch: BranchId,
    pub(super) cancel: TurnCancel,
    pub(super) events: Option<FeedReceiver>,
    pub(super) task: tokio::task::JoinHandle<Result<TurnAnswer, SessionError>>,
}

impl TurnHandle {
    /// The turn's id (its records and events carry it).
    pub fn id(&self) -> &TurnId {
        &self.id
    }

    /// The branch it runs on.
    pub fn branch(&self) -> &BranchId {
        &self.branch
    }

    /// Cancels the turn (see [`TurnCancel::request`]); a turn cancelled
    /// before it started ends without calling the provider.
    pub fn cancel(&self, mode: CancelMode) {
        self.cancel.request(mode);
    }

    /// A cancellation handle to keep while [`TurnHandle::result`] is
    /// awaited.
    pub fn canceller(&self) -> TurnCancel {
        self.cancel.clone()
    }

    /// The turn's records and events, from its start (None once taken).
    pub fn events(&mut self) -> Option<TurnEvents> {
        self.events.take().map(|rx| TurnEvents {
            rx,
            turn: self.id.clone(),
            ended: false,
        })
    }

    /// Whether the turn has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the turn's answer text (or why it has none).
    pub async fn result(self) -> Result<String, SessionError> {
        self.answer().await.map(|a| a.text)
    }

    /// Waits for the turn's answer, its structured value included (or why
    /// it has none).
    pub async fn answer(self) -> Result<TurnAnswer, SessionError> {
        let Self {
            id, events, task, ..
        } = self;
        // Nobody follows the events from here: let go of them first, so a
        // turn nobody watches neither builds nor queues its events.
        drop(events);
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(SessionError::Invalid(format!(
                "turn {} failed unexpectedly (a panic in the kernel or a module; see the log)",
                id
            ))),
            Err(_) => Err(SessionError::Cancelled),
        }
    }
}

/// Cancels a turn when dropped (unless disarmed): what ties a turn to the
/// future of [`super::Session::execute`].
pub(super) struct CancelOnDrop(pub(super) Option<TurnCancel>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.request(CancelMode::Immediate);
        }
    }
}

/// One turn's part of the session's feed: its records and events in the
/// order they happened, ending after its `execution:end`.
pub struct TurnEvents {
    rx: FeedReceiver,
    turn: TurnId,
    ended: bool,
}

impl TurnEvents {
    /// The turn's id.
    pub fn turn(&self) -> &TurnId {
        &self.turn
    }

    /// The turn's next item if one is waiting now; `None` when none is (or
    /// after its `execution:end`). Once the turn's result is in, every item
    /// it published is waiting.
    pub async fn try_next(&mut self) -> Option<Result<Arc<FeedItem>, FeedError>> {
        while !self.ended {
            match self.rx.try_recv().await {
                Ok(Some(item)) => {
                    if let Some(item) = self.mine(item) {
                        return Some(Ok(item));
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// `item` if it is the turn's (noting its end).
    fn mine(&mut self, item: Arc<FeedItem>) -> Option<Arc<FeedItem>> {
        if item.turn() != Some(&self.turn) {
            return None;
        }
        if item
            .as_event()
            .is_some_and(|e| e.name == events::EXECUTION_END)
        {
            self.ended = true;
        }
        Some(item)
    }

    /// The turn's next item; `None` after its `execution:end`. An error
    /// means items were lost ([`FeedError::Lagged`]) or the session is
    /// gone.
    pub async fn next(&mut self) -> Option<Result<Arc<FeedItem>, FeedError>> {
        if self.ended {
            return None;
        }
        loop {
            match self.rx.recv().await {
                Ok(item) => {
                    if let Some(item) = self.mine(item) {
                        return Some(Ok(item));
                    }
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
