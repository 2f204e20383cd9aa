//! `segvol view IMAGE`: a page on 127.0.0.1 that shows the volume with NiiVue (vendored,
//! `serve/ui/`) and segments it with an [`InteractiveSession`]: drag a box, click points,
//! undo, reset, next object, corrector on/off, save the label map (NIfTI with the image's
//! geometry) and a screenshot. One image, one session; the model runs on the calling thread.
//!
//! Every action the page sends is also recorded ([`Action`]), so the same actions can be
//! replayed through the library alone ([`replay`]): the browser test compares the two.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use burn::tensor::backend::Backend;
use segvol_core::SegVol;
use segvol_core::zoom::box_where;
use segvol_gru::GruCorrector;
use segvol_interactive::{InteractiveSession, SessionError, Update, VoxelBox};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::ServeError;

const INDEX: &[u8] = include_bytes!("../ui/index.html");
const NIIVUE: &[u8] = include_bytes!("../ui/niivue.umd.js");

/// One user action, as the page sends it (voxel indices in array order `[z, y, x]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A box; one slice thick on some axis = a 2-D box (extended by the session).
    Box {
        /// Low corner (inclusive).
        lo: [usize; 3],
        /// High corner (inclusive).
        hi: [usize; 3],
    },
    /// A positive (`fg`) or negative point.
    Point {
        /// The voxel.
        zyx: [usize; 3],
        /// Positive?
        fg: bool,
    },
    /// Undo the last action.
    Undo,
    /// Clear the current object.
    Reset,
    /// Commit the current object and start the next.
    Next,
    /// Corrector on or off.
    Corrector {
        /// On?
        on: bool,
    },
    /// A structure's name as a text prompt for the current object (`None` clears it).
    Text {
        /// The name ("liver").
        name: Option<String>,
    },
}

/// Applies one action to a session (what the server and [`replay`] both do).
///
/// # Errors
/// A prompt outside the image; the model's error.
pub fn apply<B: Backend>(
    s: &mut InteractiveSession<'_, B>,
    a: &Action,
) -> Result<Option<Update>, SessionError> {
    Ok(match *a {
        Action::Text { ref name } => Some(s.set_text(name.as_deref())?),
        Action::Box { lo, hi } => {
            let thin = (0..3).find(|&k| lo[k] == hi[k]);
            Some(match thin {
                Some(axis) => s.set_box_2d(axis, lo, hi)?,
                None => s.set_box(lo, hi)?,
            })
        }
        Action::Point { zyx, fg } => Some(s.add_point(zyx, fg)?),
        Action::Undo => s.undo(),
        Action::Reset => Some(Update {
            ran: false,
            changed: s.reset(),
            encode_s: 0.0,
            decode_s: 0.0,
        }),
        Action::Next => {
            s.next_object();
            None
        }
        Action::Corrector { on } => {
            s.set_corrector(on);
            None
        }
    })
}

/// Replays `actions` on a fresh session and returns the label map.
///
/// # Errors
/// As [`apply`].
pub fn replay<B: Backend>(
    s: &mut InteractiveSession<'_, B>,
    actions: &[Action],
) -> Result<Vec<u8>, SessionError> {
    for a in actions {
        apply(s, a)?;
    }
    Ok(s.label_map())
}

/// Viewer settings.
#[derive(Debug, Clone)]
pub struct ViewConfig {
    /// Address (127.0.0.1).
    pub host: String,
    /// Port (0 = any free one).
    pub port: u16,
    /// Where "Save" also writes the label map on the server side.
    pub out: Option<PathBuf>,
    /// Zoom-in, clicks that stick, prompt feedback
    /// ([`SessionOptions::live`](segvol_interactive::SessionOptions::live) by default in
    /// `segvol view`).
    pub options: segvol_interactive::SessionOptions,
}

/// Writes a label map (u8, the image's grid) as NIfTI bytes with the image's geometry.
pub type LabelsToNifti = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// The image as the page loads it, and its grid.
pub struct ViewImage {
    /// The image as a NIfTI file (`.nii` or `.nii.gz` bytes) NiiVue reads.
    pub file: Vec<u8>,
    /// Its name (the extension tells NiiVue the format).
    pub name: String,
    /// Voxels as float, `[z, y, x]` C order.
    pub data: Vec<f32>,
    /// Shape.
    pub dims: [usize; 3],
    /// Spacing (mm).
    pub spacing: [f64; 3],
    /// The label map (u8) as NIfTI bytes with the image's geometry, from a label array.
    pub labels_nifti: LabelsToNifti,
    /// Writes the label map to `--out` ("Save"): NIfTI, or a DICOM SEG referencing the
    /// source series.
    pub save: SaveLabels,
}

/// Writes a label map (u8, the image's grid) to a path, whole or not at all.
pub type SaveLabels = Box<dyn Fn(&[u8], &std::path::Path) -> Result<(), String> + Send + Sync>;

enum Job {
    Act(Action, oneshot::Sender<Result<Value, String>>),
    Labels(oneshot::Sender<Vec<u8>>),
    Block([usize; 3], [usize; 3], oneshot::Sender<Option<Vec<u8>>>),
    /// The box of the labelled voxels (for a page opened on a session with labels).
    Extent(oneshot::Sender<Option<VoxelBox>>),
}

/// The window a page opens with: `soft` (CT soft tissue) for an image in Hounsfield units
/// (air at -1000 or below -900 and a range over 1000), else `auto` (NiiVue's robust range),
/// as for MR.
pub fn first_window(data: &[f32]) -> &'static str {
    let (lo, hi) = data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if lo <= -900.0 && hi - lo >= 1000.0 {
        "soft"
    } else {
        "auto"
    }
}

/// `"z,y,x"` → indices.
fn triple(v: &str) -> Option<[usize; 3]> {
    let p: Vec<usize> = v
        .split(',')
        .map(|x| x.trim().parse().ok())
        .collect::<Option<_>>()?;
    (p.len() == 3).then(|| [p[0], p[1], p[2]])
}

struct Shared {
    cfg: ViewConfig,
    file: Vec<u8>,
    name: String,
    labels_nifti: LabelsToNifti,
    save: SaveLabels,
    jobs: Mutex<mpsc::Sender<Job>>,
    actions: Mutex<Vec<Action>>,
    /// Whether the model has SegVol's text tower (the page then shows its text field).
    text: bool,
    /// [`first_window`] of the image.
    window: &'static str,
}

type St = State<Arc<Shared>>;

fn fail(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(json!({"detail": msg.into()}))).into_response()
}

fn with_type(body: Vec<u8>, ctype: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static(ctype));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    (StatusCode::OK, h, body).into_response()
}

/// Sends the model thread a job made around a reply channel and waits for the reply.
async fn ask<T>(s: &Shared, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    s.jobs
        .lock()
        .map_err(|_| fail(StatusCode::INTERNAL_SERVER_ERROR, "lock"))?
        .send(job(tx))
        .map_err(|_| fail(StatusCode::SERVICE_UNAVAILABLE, "stopping"))?;
    rx.await
        .map_err(|_| fail(StatusCode::INTERNAL_SERVER_ERROR, "model thread"))
}

async fn labels(s: &Shared) -> Result<Vec<u8>, Response> {
    ask(s, Job::Labels).await
}

async fn act(State(s): St, body: Bytes) -> Response {
    let a: Action = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("bad action: {e}")),
    };
    let (tx, rx) = oneshot::channel();
    let sent = s
        .jobs
        .lock()
        .map(|j| j.send(Job::Act(a.clone(), tx)).is_ok())
        .unwrap_or(false);
    if !sent {
        return fail(StatusCode::SERVICE_UNAVAILABLE, "stopping");
    }
    match rx.await {
        Ok(Ok(v)) => {
            if let Ok(mut l) = s.actions.lock() {
                l.push(a);
            }
            axum::Json(v).into_response()
        }
        Ok(Err(e)) => fail(StatusCode::BAD_REQUEST, e),
        Err(_) => fail(StatusCode::INTERNAL_SERVER_ERROR, "model thread"),
    }
}

async fn save(State(s): St) -> Response {
    let l = match labels(&s).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(out) = &s.cfg.out else {
        return axum::Json(json!({"saved": null})).into_response();
    };
    match (s.save)(&l, out) {
        Ok(()) => {
            tracing::info!(path = %out.display(), "label map saved");
            axum::Json(json!({"saved": out})).into_response()
        }
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { with_type(INDEX.to_vec(), "text/html; charset=utf-8") }))
        .route(
            "/niivue.umd.js",
            get(|| async { with_type(NIIVUE.to_vec(), "text/javascript") }),
        )
        .route(
            "/image/{name}",
            get(|State(s): St| async move { with_type(s.file.clone(), "application/octet-stream") }),
        )
        .route(
            "/api/info",
            get(|State(s): St| async move {
                let labelled = match ask(&s, Job::Extent).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                axum::Json(json!({
                    "image": format!("/image/{}", s.name),
                    "name": s.name,
                    "text": s.text,
                    "window": s.window,
                    "labelled": labelled,
                }))
                .into_response()
            }),
        )
        .route(
            "/labels/{name}",
            get(
                |State(s): St, axum::extract::Path(name): axum::extract::Path<String>| async move {
                    let l = match labels(&s).await {
                        Ok(l) => l,
                        Err(r) => return r,
                    };
                    let b = match (s.labels_nifti)(&l) {
                        Ok(b) => b,
                        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, e),
                    };
                    if !name.ends_with(".gz") {
                        return with_type(b, "application/octet-stream");
                    }
                    // A mostly-empty label map gzips ~1000:1: the page's first load is small.
                    let gz = tokio::task::spawn_blocking(move || {
                        use std::io::Write as _;
                        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        e.write_all(&b).and_then(|()| e.finish())
                    })
                    .await;
                    match gz {
                        Ok(Ok(z)) => with_type(z, "application/octet-stream"),
                        _ => fail(StatusCode::INTERNAL_SERVER_ERROR, "gzip"),
                    }
                },
            ),
        )
        .route(
            "/api/labels",
            get(
                |State(s): St, q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    match (q.get("lo").and_then(|v| triple(v)), q.get("hi").and_then(|v| triple(v))) {
                        (Some(lo), Some(hi)) => {
                            let (tx, rx) = oneshot::channel();
                            let sent = s
                                .jobs
                                .lock()
                                .map(|j| j.send(Job::Block(lo, hi, tx)).is_ok())
                                .unwrap_or(false);
                            match (sent, rx.await) {
                                (true, Ok(Some(b))) => with_type(b, "application/octet-stream"),
                                (true, Ok(None)) => fail(StatusCode::BAD_REQUEST, "box outside the image"),
                                _ => fail(StatusCode::SERVICE_UNAVAILABLE, "stopping"),
                            }
                        }
                        _ => match labels(&s).await {
                            Ok(l) => with_type(l, "application/octet-stream"),
                            Err(r) => r,
                        },
                    }
                },
            ),
        )
        .route("/api/action", post(act))
        .route(
            "/api/actions",
            get(|State(s): St| async move {
                let l = s.actions.lock().map(|l| l.clone()).unwrap_or_default();
                axum::Json(l).into_response()
            }),
        )
        .route("/api/save", post(save))
        .with_state(shared)
}

/// Serves the page until interrupted; the model runs on this thread.
///
/// # Errors
/// [`ServeError::Io`] when the address cannot be bound.
pub fn view<B: Backend>(
    cfg: ViewConfig,
    image: ViewImage,
    model: &SegVol<B>,
    corrector: Option<&GruCorrector<B>>,
    device: &B::Device,
    ready: impl FnOnce(std::net::SocketAddr) + Send + 'static,
) -> Result<(), ServeError> {
    let window = first_window(&image.data);
    let mut session = InteractiveSession::new(
        model,
        corrector,
        device,
        image.data,
        image.dims,
        image.spacing,
    )
    .map_err(|e| ServeError::Io(e.to_string()))?;
    session.set_options(cfg.options);
    let (tx, rx) = mpsc::channel::<Job>();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        file: image.file,
        name: image.name,
        labels_nifti: image.labels_nifti,
        save: image.save,
        jobs: Mutex::new(tx),
        actions: Mutex::new(Vec::new()),
        text: model.has_text(),
        window,
    });
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let closer = shared.clone();
    let http = crate::spawn_http(
        addr,
        router(shared.clone()),
        ready,
        || {},
        move || {
            if let Ok(mut j) = closer.jobs.lock() {
                *j = mpsc::channel().0;
            }
        },
    )?;
    drop(shared);
    while let Ok(job) = rx.recv() {
        match job {
            Job::Labels(reply) => {
                let _ = reply.send(session.label_map());
            }
            Job::Block(lo, hi, reply) => {
                let _ = reply.send(session.label_block(lo, hi));
            }
            Job::Extent(reply) => {
                let _ = reply.send(box_where(&session.label_map(), session.dims(), |l| l > 0));
            }
            Job::Act(a, reply) => {
                let t = Instant::now();
                let r = apply(&mut session, &a)
                    .map(|u| {
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        let fg = session.mask().iter().filter(|&&m| m > 0).count();
                        tracing::info!(?a, ms, voxels = fg, "action");
                        json!({
                            "ms": ms,
                            "encode_s": u.as_ref().map_or(0.0, |u| u.encode_s),
                            "changed": u.as_ref().and_then(|u| u.changed),
                            "voxels": fg,
                            "undo_depth": session.undo_depth(),
                        })
                    })
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
        }
    }
    let _ = http.join();
    Ok(())
}
