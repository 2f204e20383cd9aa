//! What the HTTP side and the model thread share: the jobs sent to the model (plain data, no
//! backend types cross threads), the leases, and the wait for a job's answer.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use tokio::sync::oneshot;

use crate::ServeConfig;
use crate::api::ApiError;
use crate::nnia::Dtype;

/// Model work, as plain data (no backend types cross threads).
#[derive(Debug)]
pub(crate) enum Op {
    SetImage {
        data: Vec<f32>,
        dims: [usize; 3],
        spacing: [f64; 3],
    },
    ResetBuffer,
    Box {
        lo: [usize; 3],
        hi: [usize; 3],
        thin: Option<usize>,
        include: bool,
        run: bool,
    },
    Point {
        zyx: [usize; 3],
        include: bool,
        run: bool,
    },
    /// segvol-rs's extension: a structure's name as SegVol's text prompt (`None` clears it).
    Text {
        name: Option<String>,
    },
    Predict,
    Undo,
    Drop,
}

/// What the model thread answers.
#[derive(Debug)]
pub(crate) enum Outcome {
    Done,
    Prediction {
        ran: bool,
        /// Inclusive box and the buffer content inside it.
        region: Option<([usize; 3], [usize; 3], Vec<u8>)>,
    },
}

pub(crate) struct Job {
    pub(crate) token: String,
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Outcome, ApiError>>,
}

pub(crate) struct Lease {
    pub(crate) last_seen: Instant,
    pub(crate) last_active: Instant,
    pub(crate) dims: Option<[usize; 3]>,
    pub(crate) dtype: Dtype,
}

pub(crate) struct Shared {
    pub(crate) cfg: ServeConfig,
    pub(crate) leases: Mutex<HashMap<String, Lease>>,
    pub(crate) jobs: Mutex<mpsc::Sender<Job>>,
    /// The model has SegVol's text tower (`/add_text_interaction` works).
    pub(crate) text: bool,
}

pub(crate) type St = State<Arc<Shared>>;

pub(crate) fn short(t: &str) -> &str {
    &t[..t.len().min(8)]
}

pub(crate) async fn run_job(s: &Shared, token: String, op: Op) -> Result<Outcome, ApiError> {
    let (reply, rx) = oneshot::channel();
    s.jobs
        .lock()
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "lock".into()))?
        .send(Job { token, op, reply })
        .map_err(|_| ApiError(StatusCode::SERVICE_UNAVAILABLE, "server is stopping".into()))?;
    match tokio::time::timeout(s.cfg.request_timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model thread dropped the request".into(),
        )),
        Err(_) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is busy; try again".into(),
        )),
    }
}
