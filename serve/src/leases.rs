//! Auth, leases and liveness (§1–§2): claim, release, heartbeats, the reaper of idle sessions.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use tokio::sync::oneshot;

use crate::api::{ApiError, ApiResult, ok_json};
use crate::nnia::Dtype;
use crate::state::{Job, Lease, Op, Shared, St, short};

pub(crate) async fn reaper(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.cfg.reap_every);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let dead: Vec<String> = match shared.leases.lock() {
            Ok(mut l) => {
                let dead: Vec<String> = l
                    .iter()
                    .filter(|(_, s)| {
                        now - s.last_seen > shared.cfg.liveness_timeout
                            || now - s.last_active > shared.cfg.idle_timeout
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &dead {
                    l.remove(k);
                }
                dead
            }
            Err(_) => Vec::new(),
        };
        for token in dead {
            tracing::info!(lease = %short(&token), "session reaped");
            let (reply, _) = oneshot::channel();
            if let Ok(j) = shared.jobs.lock() {
                let _ = j.send(Job {
                    token,
                    op: Op::Drop,
                    reply,
                });
            }
        }
    }
}

pub(crate) fn auth(s: &Shared, h: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &s.cfg.api_key else {
        return Ok(());
    };
    let given = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "Missing bearer token".into(),
        )),
        // Constant time: the comparison's duration does not tell how much of a guess matched.
        Some(k) if bool::from(subtle::ConstantTimeEq::ct_eq(k.as_bytes(), key.as_bytes())) => {
            Ok(())
        }
        Some(_) => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "Invalid bearer token".into(),
        )),
    }
}

/// Checks key and lease; refreshes `last_seen` (and `last_active` for real actions).
pub(crate) fn lease(s: &Shared, h: &HeaderMap, active: bool) -> Result<String, ApiError> {
    auth(s, h)?;
    let token = h
        .get("x-lease-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError(StatusCode::GONE, "lease token missing".into()))?;
    let mut l = s
        .leases
        .lock()
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "lock".into()))?;
    let e = l
        .get_mut(token)
        .ok_or_else(|| ApiError(StatusCode::GONE, "lease expired or unknown".into()))?;
    let now = Instant::now();
    e.last_seen = now;
    if active {
        e.last_active = now;
    }
    Ok(token.to_string())
}

pub(crate) fn with_lease<T>(
    s: &Shared,
    token: &str,
    f: impl FnOnce(&mut Lease) -> T,
) -> Result<T, ApiError> {
    let mut l = s
        .leases
        .lock()
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "lock".into()))?;
    l.get_mut(token)
        .map(f)
        .ok_or_else(|| ApiError(StatusCode::GONE, "lease expired or unknown".into()))
}

pub(crate) async fn capabilities(State(s): St, h: HeaderMap) -> ApiResult {
    auth(&s, &h)?;
    ok_json(json!({
        "supported_interactions": {
            "scribble": true, "lasso": true, "points": true, "bbox2d": true, "bbox3d": true
        },
        "channel_mapping": {
            "prev_seg": 0, "bbox2d": [1, 2], "bbox3d": [1, 2], "lasso": [1, 2],
            "points": [3, 4], "scribble": [5, 6]
        },
        "num_interaction_channels": 7,
        "supports_initial_label": false,
        "supports_zero_shot_label_refinement": false,
        "preferred_scribble_thickness": [2, 2, 2],
        "interaction_decay": null,
        "inference_session_version": concat!("segvol-rs ", env!("CARGO_PKG_VERSION")),
        "license": "segvol-rs: MIT OR Apache-2.0; the shipped weights: see NOTICES",
        "supports_undo": true,
        "do_autozoom": false,
        "patch_size": null,
        // segvol-rs's extension (docs/serve.md): POST /add_text_interaction {"text": "liver"}.
        "supports_text": s.text,
    }))
}

pub(crate) async fn claim(State(s): St, h: HeaderMap) -> ApiResult {
    auth(&s, &h)?;
    let mut l = s
        .leases
        .lock()
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "lock".into()))?;
    if l.len() >= s.cfg.max_sessions {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("server is at capacity ({} sessions)", s.cfg.max_sessions),
        ));
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let now = Instant::now();
    l.insert(
        token.clone(),
        Lease {
            last_seen: now,
            last_active: now,
            dims: None,
            dtype: Dtype::U8,
        },
    );
    tracing::info!(lease = %short(&token), sessions = l.len(), "session claimed");
    ok_json(json!({
        "lease_token": token,
        "idle_timeout_seconds": s.cfg.idle_timeout.as_secs_f64(),
        "liveness_timeout_seconds": s.cfg.liveness_timeout.as_secs_f64(),
        "max_sessions": s.cfg.max_sessions,
    }))
}

pub(crate) async fn release(State(s): St, h: HeaderMap) -> ApiResult {
    auth(&s, &h)?;
    if let Some(t) = h.get("x-lease-token").and_then(|v| v.to_str().ok()) {
        let removed = s
            .leases
            .lock()
            .map(|mut l| l.remove(t).is_some())
            .unwrap_or(false);
        if removed {
            tracing::info!(lease = %short(t), "session released");
            let (reply, _) = oneshot::channel();
            if let Ok(j) = s.jobs.lock() {
                let _ = j.send(Job {
                    token: t.to_string(),
                    op: Op::Drop,
                    reply,
                });
            }
        }
    }
    ok_json(json!({"released": true}))
}

pub(crate) fn remaining(s: &Shared, token: &str) -> Result<f64, ApiError> {
    with_lease(s, token, |e| {
        (s.cfg.idle_timeout.as_secs_f64() - e.last_active.elapsed().as_secs_f64()).max(0.0)
    })
}

pub(crate) async fn heartbeat(State(s): St, h: HeaderMap) -> ApiResult {
    let t = lease(&s, &h, false)?;
    ok_json(json!({"remaining_seconds": remaining(&s, &t)?}))
}

pub(crate) async fn lease_status(State(s): St, h: HeaderMap) -> ApiResult {
    auth(&s, &h)?;
    let t = h
        .get("x-lease-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError(StatusCode::GONE, "lease token missing".into()))?;
    ok_json(json!({
        "remaining_seconds": remaining(&s, t)?,
        "idle_timeout_seconds": s.cfg.idle_timeout.as_secs_f64(),
    }))
}
