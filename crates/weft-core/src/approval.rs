//! Approval and display: the kernel's two ways of reaching a person.
//!
//! [`ApprovalSystem`] answers "may this happen?" (a hook's `ask_user`, the
//! bash tool before it runs a command). The kernel is **fail-closed**: no
//! approval system, an error, a timeout with default deny, or any answer
//! other than allow means deny. [`DisplaySystem`] shows notifications.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a timeout means for an approval request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDefault {
    /// A timeout denies (the default).
    #[default]
    Deny,
    /// A timeout allows.
    Allow,
}

/// A question for the person (or policy) behind the approval system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The session asking.
    pub session_id: Option<String>,
    /// The event or tool that needs approval (`tool:pre`, `bash`, …).
    pub subject: String,
    /// The question.
    pub prompt: String,
    /// The answers offered (for display).
    pub options: Vec<String>,
    /// How long to wait for an answer.
    pub timeout: Duration,
    /// What a timeout means.
    pub default: ApprovalDefault,
    /// Extra details (the tool input, …).
    pub details: Value,
}

/// The answer to an [`ApprovalRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// Allowed this once.
    Allow,
    /// Allowed, and the same request (the same subject with the same
    /// details, e.g. the same command text for `bash`) may be allowed
    /// without asking again in this session.
    AllowAlways,
    /// Denied.
    Deny {
        /// Why.
        reason: Option<String>,
    },
}

impl ApprovalDecision {
    /// Whether the answer allows the action.
    pub fn is_allowed(&self) -> bool {
        matches!(
            self,
            ApprovalDecision::Allow | ApprovalDecision::AllowAlways
        )
    }
}

/// Why an approval request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("approval failed: {0}")]
pub struct ApprovalError(pub String);

/// Asks whether something may happen.
///
/// Contract: answer within `request.timeout` if possible (the kernel also
/// enforces it); an `Err` is treated as a denial.
#[async_trait]
pub trait ApprovalSystem: Send + Sync {
    /// Asks; the kernel treats anything but an allow as a denial.
    async fn request_approval(
        &self,
        request: ApprovalRequest,
    ) -> Result<ApprovalDecision, ApprovalError>;
}

/// Asks with a timeout and applies the fail-closed rules: an error or any
/// non-allow answer denies; a timeout takes the request's default. `None`
/// (no approval system) denies.
pub async fn ask(
    system: Option<&dyn ApprovalSystem>,
    request: ApprovalRequest,
) -> ApprovalDecision {
    let Some(system) = system else {
        return ApprovalDecision::Deny {
            reason: Some(format!(
                "{} needs approval but no approval system is available",
                request.subject
            )),
        };
    };
    let timeout = request.timeout;
    let default = request.default;
    match tokio::time::timeout(timeout, system.request_approval(request)).await {
        Ok(Ok(decision)) if decision.is_allowed() => decision,
        Ok(Ok(ApprovalDecision::Deny { reason })) => ApprovalDecision::Deny { reason },
        Ok(Ok(_)) => ApprovalDecision::Deny { reason: None },
        Ok(Err(e)) => ApprovalDecision::Deny {
            reason: Some(e.to_string()),
        },
        Err(_) => match default {
            ApprovalDefault::Allow => ApprovalDecision::Allow,
            ApprovalDefault::Deny => ApprovalDecision::Deny {
                reason: Some(format!(
                    "no answer within {} s; denied by default",
                    timeout.as_secs_f64()
                )),
            },
        },
    }
}

/// An approval system that answers every request the same way, for scripts
/// (`--yes`), tests and the daemon's non-interactive policies.
#[derive(Debug, Clone)]
pub struct FixedApproval(pub ApprovalDecision);

impl FixedApproval {
    /// Allows everything.
    pub fn allow_all() -> Self {
        Self(ApprovalDecision::Allow)
    }

    /// Denies everything.
    pub fn deny_all() -> Self {
        Self(ApprovalDecision::Deny {
            reason: Some("denied by policy".into()),
        })
    }
}

#[async_trait]
impl ApprovalSystem for FixedApproval {
    async fn request_approval(
        &self,
        _request: ApprovalRequest,
    ) -> Result<ApprovalDecision, ApprovalError> {
        Ok(self.0.clone())
    }
}

/// How important a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisplayLevel {
    /// For information.
    Info,
    /// Something to look at.
    Warning,
    /// Something failed.
    Error,
}

/// Shows notifications to whoever is watching the session.
///
/// Contract: never blocks for long and never fails; a display that cannot
/// show a message drops it.
pub trait DisplaySystem: Send + Sync {
    /// Shows `message` from `source` (a module or hook name).
    fn show_message(&self, message: &str, level: DisplayLevel, source: &str);
}

/// A display that writes notifications to the `tracing` log.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingDisplay;

impl DisplaySystem for TracingDisplay {
    fn show_message(&self, message: &str, level: DisplayLevel, source: &str) {
        match level {
            DisplayLevel::Info => tracing::info!(source, "{message}"),
            DisplayLevel::Warning => tracing::warn!(source, "{message}"),
            DisplayLevel::Error => tracing::error!(source, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Slow;
    #[async_trait]
    impl ApprovalSystem for Slow {
        async fn request_approval(
            &self,
            _r: ApprovalRequest,
        ) -> Result<ApprovalDecision, ApprovalError> {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(ApprovalDecision::Allow)
        }
    }

    struct Failing;
    #[async_trait]
    impl ApprovalSystem for Failing {
        async fn request_approval(
            &self,
            _r: ApprovalRequest,
        ) -> Result<ApprovalDecision, ApprovalError> {
            Err(ApprovalError("terminal closed".into()))
        }
    }

    fn request(default: ApprovalDefault) -> ApprovalRequest {
        ApprovalRequest {
            session_id: None,
            subject: "bash".into(),
            prompt: "run rm?".into(),
            options: vec!["allow".into(), "deny".into()],
            timeout: Duration::from_millis(50),
            default,
            details: Value::Null,
        }
    }

    #[tokio::test]
    async fn fail_closed() {
        assert!(
            !ask(None, request(ApprovalDefault::Allow))
                .await
                .is_allowed()
        );
        assert!(
            !ask(Some(&Failing), request(ApprovalDefault::Allow))
                .await
                .is_allowed()
        );
        assert!(
            !ask(Some(&Slow), request(ApprovalDefault::Deny))
                .await
                .is_allowed()
        );
        assert!(
            ask(Some(&Slow), request(ApprovalDefault::Allow))
                .await
                .is_allowed()
        );
        assert!(
            !ask(
                Some(&FixedApproval::deny_all()),
                request(ApprovalDefault::Allow)
            )
            .await
            .is_allowed()
        );
        assert!(
            ask(
                Some(&FixedApproval::allow_all()),
                request(ApprovalDefault::Deny)
            )
            .await
            .is_allowed()
        );
    }
}
