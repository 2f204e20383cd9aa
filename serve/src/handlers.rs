//! The protocol's routes (§3) and their handlers: each parses its request, sends one job to the
//! model thread and answers with its outcome.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::{
    ApiError, ApiResult, flag, json_body, meta_response, nothing_ran, ok_json, x_meta,
};
use crate::leases::{capabilities, claim, heartbeat, lease, lease_status, release, with_lease};
use crate::nnia::{self, Array, Dtype};
use crate::prompts::{central, marked, num, parse_box, round_even};
use crate::state::{Op, Outcome, Shared, St, run_job, short};

/// Routes of the protocol (§3).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let limit = usize::try_from(
        shared
            .cfg
            .max_voxels
            .saturating_mul(8)
            .saturating_add(1 << 20),
    )
    .unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"ok": true})) }),
        )
        .route("/capabilities", get(capabilities))
        .route("/claim", post(claim))
        .route("/release", post(release))
        .route("/heartbeat", post(heartbeat))
        .route("/lease_status", get(lease_status))
        .route("/set_image", post(set_image))
        .route("/set_target_buffer", post(set_target_buffer))
        .route("/set_do_autozoom", post(set_do_autozoom))
        .route("/reset_interactions", post(reset_interactions))
        .route("/add_bbox_interaction", post(add_bbox))
        .route("/add_point_interaction", post(add_point))
        .route("/add_text_interaction", post(add_text))
        .route("/add_scribble_interaction", post(add_scribble))
        .route("/add_lasso_interaction", post(add_lasso))
        .route("/add_initial_seg_interaction", post(add_initial_seg))
        .route("/predict", post(predict))
        .route("/undo", post(undo))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

pub(crate) async fn set_image(State(s): St, h: HeaderMap, body: Bytes) -> ApiResult {
    let t = lease(&s, &h, true)?;
    let meta = x_meta(&h)?;
    let max_bytes = usize::try_from(s.cfg.max_voxels.saturating_mul(8)).unwrap_or(usize::MAX);
    let (dtype, shape) = nnia::peek(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    if shape.len() != 4 {
        return Err(ApiError::bad(format!(
            "the image must be 4-D [C, X, Y, Z], got shape {shape:?}"
        )));
    }
    let voxels = shape[1..]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    if voxels.is_none_or(|v| v > s.cfg.max_voxels) {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "image {shape:?} has more voxels than this server's limit {}",
                s.cfg.max_voxels
            ),
        ));
    }
    let started = Instant::now();
    let arr = tokio::task::spawn_blocking(move || nnia::unpack(&body, max_bytes))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let dims = [arr.shape[1], arr.shape[2], arr.shape[3]];
    let n: usize = dims.iter().product();
    let mut data = arr.to_f32();
    data.truncate(n); // channel 0
    let spacing = meta
        .get("image_properties")
        .and_then(|p| p.get("spacing"))
        .and_then(Value::as_array)
        .filter(|a| a.len() == 3)
        .map(|a| [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(1.0)))
        .unwrap_or([1.0; 3]);
    run_job(
        &s,
        t.clone(),
        Op::SetImage {
            data,
            dims,
            spacing,
        },
    )
    .await?;
    with_lease(&s, &t, |e| e.dims = Some(dims))?;
    tracing::info!(lease = %short(&t), ?dims, dtype = dtype.name(), seconds = started.elapsed().as_secs_f64(), "image set");
    ok_json(json!({"original_image_shape": shape}))
}

pub(crate) async fn set_target_buffer(State(s): St, h: HeaderMap, body: Bytes) -> ApiResult {
    let t = lease(&s, &h, true)?;
    let v = json_body(&body)?;
    let shape = v
        .get("shape")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 3)
        .ok_or_else(|| ApiError::bad("`shape` must be a list of 3 positive integers"))?;
    let mut dims = [0usize; 3];
    for (i, d) in shape.iter().enumerate() {
        dims[i] = d
            .as_u64()
            .filter(|&d| d > 0)
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| ApiError::bad("`shape` must be a list of 3 positive integers"))?;
    }
    let dtype = v
        .get("dtype")
        .and_then(Value::as_str)
        .and_then(Dtype::parse)
        .filter(|d| d.is_integer())
        .ok_or_else(|| ApiError::bad("`dtype` must be bool or an integer type"))?;
    let image = with_lease(&s, &t, |e| e.dims)?;
    match image {
        Some(d) if d != dims => {
            return Err(ApiError::bad(format!(
                "target buffer shape {dims:?} is not the image's {d:?}"
            )));
        }
        None => return Err(ApiError::bad("set_image first")),
        _ => {}
    }
    with_lease(&s, &t, |e| e.dtype = dtype)?;
    run_job(&s, t, Op::ResetBuffer).await?;
    ok_json(json!({}))
}

pub(crate) async fn set_do_autozoom(State(s): St, h: HeaderMap, body: Bytes) -> ApiResult {
    lease(&s, &h, true)?;
    let v = json_body(&body)?;
    flag(&v, "do_autozoom", false)?;
    // Accepted and ignored: SegVol has no adaptive zoom-out; its zoom-in is `--zoom-in`.
    ok_json(json!({}))
}

pub(crate) async fn reset_interactions(State(s): St, h: HeaderMap) -> ApiResult {
    let t = lease(&s, &h, true)?;
    run_job(&s, t, Op::ResetBuffer).await?;
    ok_json(json!({}))
}

pub(crate) fn image_dims(s: &Shared, t: &str) -> Result<[usize; 3], ApiError> {
    with_lease(s, t, |e| e.dims)?.ok_or_else(|| ApiError::bad("set_image first"))
}

pub(crate) async fn add_bbox(State(s): St, h: HeaderMap, body: Bytes) -> ApiResult {
    let t = lease(&s, &h, true)?;
    let v = json_body(&body)?;
    let dims = image_dims(&s, &t)?;
    let (lo, hi, thin) = parse_box(&v, dims)?;
    let include = flag(&v, "include_interaction", true)?;
    let run = flag(&v, "run_prediction", true)?;
    let op = Op::Box {
        lo,
        hi,
        thin,
        include,
        run,
    };
    prediction(&s, t, op).await
}

pub(crate) async fn add_point(State(s): St, h: HeaderMap, body: Bytes) -> ApiResult {
    let t = lease(&s, &h, true)?;
    let v = json_body(&body)?;
    let dims = image_dims(&s, &t)?;
    let c = v
        .get("coordinates")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 3)
        .ok_or_else(|| ApiError::bad("`coordinates` must be [x, y, z]"))?;
    let mut zyx = [0usize; 3];
    for a in 0..3 {
        let x = round_even(num(&c[a])?);
        if x < 0.0 || x >= dims[a] as f64 {
            return Err(ApiError::bad(format!(
                "point {:?} is outside the image {dims:?}",
                c.iter()
                    .map(|v| v.as_f64().unwrap_or(f64::NAN))
                    .collect::<Vec<_>>()
            )));
        }
        zyx[a] = x as usize;
    }
    let op = Op::Point {
        zyx,
        include: flag(&v, "include_interaction", true)?,
        run: flag(&v, "run_prediction", true)?,
    };
    prediction(&s, t, op).await
}

/// segvol-rs's extension (not in the nnInteractive protocol): `{"text": "liver"}` sets the
/// current object's text prompt and predicts; `{"text": null}` clears it. A 400 when the
/// weights carry no text tower.
pub(crate) async fn add_text(State(s): St, h: HeaderMap, body: Bytes) -> ApiResult {
    let t = lease(&s, &h, true)?;
    let v = json_body(&body)?;
    let name = match v.get("text") {
        Some(Value::String(n)) if !n.trim().is_empty() => Some(n.trim().to_string()),
        Some(Value::Null) => None,
        _ => return Err(ApiError::bad("`text` must be a structure's name or null")),
    };
    if !s.text {
        return Err(ApiError::bad(
            "these weights carry no text tower: text prompts need SegVol's official checkpoint",
        ));
    }
    image_dims(&s, &t)?;
    prediction(&s, t, Op::Text { name }).await
}

pub(crate) async fn add_scribble(State(s): St, h: HeaderMap, body: Bytes) -> ApiResult {
    let t = lease(&s, &h, true)?;
    let dims = image_dims(&s, &t)?;
    let (meta, pts) = marked(&h, &body, dims)?;
    // SegVol has no scribble prompt: the scribble becomes one point at its centre (docs/serve.md).
    let Some(p) = central(&pts) else {
        return nothing_ran();
    };
    let op = Op::Point {
        zyx: p,
        include: flag(&meta, "include_interaction", true)?,
        run: flag(&meta, "run_prediction", true)?,
    };
    prediction(&s, t, op).await
}

pub(crate) async fn add_lasso(State(s): St, h: HeaderMap, body: Bytes) -> ApiResult {
    let t = lease(&s, &h, true)?;
    let dims = image_dims(&s, &t)?;
    let (meta, pts) = marked(&h, &body, dims)?;
    let include = flag(&meta, "include_interaction", true)?;
    let run = flag(&meta, "run_prediction", true)?;
    let Some(c) = central(&pts) else {
        return nothing_ran();
    };
    if !include {
        // A negative lasso: a negative point inside it (SegVol has no negative box).
        return prediction(
            &s,
            t,
            Op::Point {
                zyx: c,
                include,
                run,
            },
        )
        .await;
    }
    // A positive lasso: its bounding box (2-D when drawn on one slice), then a point inside.
    let mut lo = pts[0];
    let mut hi = pts[0];
    for p in &pts {
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let thin = (0..3).find(|&a| lo[a] == hi[a]);
    run_job(
        &s,
        t.clone(),
        Op::Box {
            lo,
            hi,
            thin,
            include: true,
            run: false,
        },
    )
    .await?;
    prediction(
        &s,
        t,
        Op::Point {
            zyx: c,
            include: true,
            run,
        },
    )
    .await
}

pub(crate) async fn add_initial_seg(State(s): St, h: HeaderMap) -> ApiResult {
    lease(&s, &h, true)?;
    Err(ApiError::bad(
        "SegVol takes no mask prompt: initial segmentations are not supported \
         (capabilities: supports_initial_label = false)",
    ))
}

pub(crate) async fn predict(State(s): St, h: HeaderMap) -> ApiResult {
    let t = lease(&s, &h, true)?;
    prediction(&s, t, Op::Predict).await
}

pub(crate) async fn undo(State(s): St, h: HeaderMap) -> ApiResult {
    let t = lease(&s, &h, true)?;
    prediction(&s, t, Op::Undo).await
}

/// Runs a prediction-type job and answers as §2.6: the changed box (half-open, clipped) and
/// the buffer's content there, in the buffer's dtype.
pub(crate) async fn prediction(s: &Shared, t: String, op: Op) -> ApiResult {
    let started = Instant::now();
    let kind = format!("{op:?}")
        .split([' ', '{'])
        .next()
        .unwrap_or("")
        .to_string();
    let dtype = with_lease(s, &t, |e| e.dtype)?;
    let out = run_job(s, t.clone(), op).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match out {
        Outcome::Prediction {
            ran: false,
            region: _,
        }
        | Outcome::Done => {
            tracing::info!(lease = %short(&t), action = %kind, ms, "nothing ran");
            nothing_ran()
        }
        Outcome::Prediction {
            ran: true,
            region: None,
        } => {
            tracing::info!(lease = %short(&t), action = %kind, ms, "no voxel changed");
            meta_response(json!({"ran_prediction": true, "bbox": null}), Vec::new())
        }
        Outcome::Prediction {
            ran: true,
            region: Some((lo, hi, content)),
        } => {
            let shape: Vec<usize> = (0..3).map(|a| hi[a] + 1 - lo[a]).collect();
            let bbox: Vec<[usize; 2]> = (0..3).map(|a| [lo[a], hi[a] + 1]).collect();
            let body = tokio::task::spawn_blocking(move || {
                nnia::pack(&Array::from_mask(&content, shape, dtype))
            })
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            tracing::info!(lease = %short(&t), action = %kind, ?bbox, ms, "prediction");
            let shape: Vec<usize> = (0..3).map(|a| hi[a] + 1 - lo[a]).collect();
            meta_response(
                json!({"ran_prediction": true, "bbox": bbox, "dtype": dtype.name(), "shape": shape}),
                body,
            )
        }
    }
}
