//! The accept loop: serves each TCP connection with hyper's HTTP/1
//! connection builder, which — unlike `axum::serve` — bounds how long a
//! client may take to send its request headers (and how long an idle
//! keep-alive connection stays open), and caps the number of connections
//! served at once (further ones wait in the listen queue: a flood of slow
//! clients cannot use up the process's file descriptors). Body reading is
//! bounded where bodies are read ([`crate::extract::ApiJson`]); long
//! streaming responses are limited only by their idle keepalive.
//!
//! On shutdown it stops accepting, asks every connection to finish its
//! current response and close, and returns when all have closed.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::guard::LocalAddr;

/// The connection limits of [`serve_connections`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long a client may take to send a request's headers.
    pub(crate) header_timeout: Duration,
    /// The most connections served at once.
    pub(crate) max_connections: usize,
}

impl From<&ServerConfig> for Limits {
    fn from(config: &ServerConfig) -> Self {
        Self {
            header_timeout: config.header_timeout,
            max_connections: config.max_connections.max(1),
        }
    }
}

/// Accepts connections on `listener` and serves `app` on them until `stop`
/// is cancelled, then waits for the open connections to finish.
pub(crate) async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        // Wait for a free slot before accepting: over the cap, clients
        // wait in the listen queue instead of taking descriptors.
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors or similar: back off instead of
                // spinning; the connections that end free what is needed.
                tracing::warn!(error = %e, "cannot accept a connection; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            if let Some(local) = local {
                request.extensions_mut().insert(LocalAddr(local));
            }
            app.clone().oneshot(request)
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let stop = stop.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// Errors that concern one connection only (the next accept may work).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted
    )
}
