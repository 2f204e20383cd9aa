//! `segvol serve`: the nnInteractive remote-inference protocol (the one `nninteractive-client`
//! 2.6.0 speaks, and through it napari's and 3D Slicer's nnInteractive plugins;
//! shared/docs/NNINTERACTIVE_PROTOCOL.md) in front of
//! [`InteractiveSession`](segvol_interactive::InteractiveSession)s.
//!
//! Threads: the HTTP side (tokio + axum) handles auth, leases, heartbeats and the NNIA codec; the
//! model work runs on the calling thread, one job at a time across sessions (allowed by §1.5),
//! so `/heartbeat`, `/lease_status` and `/healthz` never wait for a prediction. Deliberate
//! differences from nnInteractive are listed in docs/serve.md.
//!
//! Modules, each using only those listed before it: `api` (HTTP errors, JSON helpers), `state`
//! (jobs, leases, the wait for an answer), `leases` (auth, claim/release, heartbeats, reaper),
//! `prompts` (interactions → SegVol prompts), `model_loop` (the model thread), `handlers`
//! (routes); [`nnia`] is the array codec and [`ui`] the browser viewer.
#![deny(missing_docs)]

pub mod nnia;
pub mod ui;

mod api;
mod handlers;
mod leases;
mod model_loop;
mod prompts;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use burn::tensor::backend::Backend;
use segvol_core::SegVol;
use segvol_gru::GruCorrector;
use segvol_interactive::SessionOptions;

use crate::handlers::router;
use crate::leases::reaper;
use crate::model_loop::model_loop;
use crate::state::{Job, Shared};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind (`127.0.0.1`).
    pub host: String,
    /// Port (1527; 0 = any free port, printed at start).
    pub port: u16,
    /// Bearer key; `None` accepts every request.
    pub api_key: Option<String>,
    /// Sessions at once (3).
    pub max_sessions: usize,
    /// A session without a real action for this long is dropped (600 s).
    pub idle_timeout: Duration,
    /// A session without any request (heartbeats count) for this long is dropped (60 s).
    pub liveness_timeout: Duration,
    /// How often sessions are reaped (15 s).
    pub reap_every: Duration,
    /// Largest image accepted, in voxels (from the NNIA header, before decoding).
    pub max_voxels: u64,
    /// Longest a request waits for the model before a 503 (the client gives up at 60 s).
    pub request_timeout: Duration,
    /// Zoom-in, clicks that stick, prompt feedback for every session
    /// ([`SessionOptions::live`] by default).
    pub options: SessionOptions,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 1527,
            api_key: None,
            max_sessions: 3,
            idle_timeout: Duration::from_secs(600),
            liveness_timeout: Duration::from_secs(60),
            reap_every: Duration::from_secs(15),
            max_voxels: 600_000_000,
            request_timeout: Duration::from_secs(55),
            options: SessionOptions::live(),
        }
    }
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or serving failed.
    #[error("{0}")]
    Io(String),
}

/// Runs the server until the process is interrupted (Ctrl-C): the HTTP side on its own
/// threads, the model on this one. `ready` is called with the bound address once it listens.
///
/// # Errors
/// [`ServeError::Io`] when the address cannot be bound.
pub fn serve<B: Backend>(
    cfg: ServeConfig,
    model: &SegVol<B>,
    corrector: Option<&GruCorrector<B>>,
    device: &B::Device,
    ready: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<(), ServeError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        leases: Mutex::new(HashMap::new()),
        jobs: Mutex::new(tx),
        text: model.has_text(),
    });
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let http = {
        let (s1, s2) = (shared.clone(), shared.clone());
        spawn_http(
            addr,
            router(shared.clone()),
            ready,
            move || {
                tokio::spawn(reaper(s1));
            },
            move || {
                // Closing the job channel ends the model loop.
                if let Ok(mut j) = s2.jobs.lock() {
                    *j = mpsc::channel().0;
                }
            },
        )?
    };
    drop(shared);
    model_loop(&cfg, rx, model, corrector, device);
    let _ = http.join();
    Ok(())
}

/// Serves `app` on `addr` from a thread of its own with a small tokio runtime; returns once the
/// address is bound (or with the bind error). `start` runs inside the runtime before serving,
/// `stop` after Ctrl-C ends it.
pub(crate) fn spawn_http(
    addr: String,
    app: Router,
    ready: impl FnOnce(SocketAddr) + Send + 'static,
    start: impl FnOnce() + Send + 'static,
    stop: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, ServeError> {
    let (bound_tx, bound_rx) = mpsc::channel::<Result<(), ServeError>>();
    let handle = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = bound_tx.send(Err(ServeError::Io(e.to_string())));
                return;
            }
        };
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = bound_tx.send(Err(ServeError::Io(format!("{addr}: {e}"))));
                    return;
                }
            };
            let _ = bound_tx.send(Ok(()));
            if let Ok(a) = listener.local_addr() {
                ready(a);
            }
            start();
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await;
            stop();
        });
    });
    bound_rx
        .recv()
        .map_err(|e| ServeError::Io(e.to_string()))??;
    Ok(handle)
}
