//! The model thread: one [`InteractiveSession`] per lease, one job at a time; a job whose
//! client gave up is dropped or taken back.

use std::collections::HashMap;
use std::sync::mpsc;

use axum::http::StatusCode;
use burn::tensor::backend::Backend;
use segvol_core::SegVol;
use segvol_gru::GruCorrector;
use segvol_interactive::{InteractiveSession, Update, VoxelBox, union_box};

use crate::ServeConfig;
use crate::api::ApiError;
use crate::state::{Job, Op, Outcome, short};

/// One session on the model thread.
pub(crate) struct Slot<'m, B: Backend> {
    pub(crate) session: InteractiveSession<'m, B>,
    pub(crate) queued: bool,
    /// A region whose change the client never received (its request timed out while an
    /// action that cannot be taken back ran): sent with the next prediction.
    pub(crate) pending: Option<VoxelBox>,
}

/// An action whose client stopped waiting while it ran (the request timed out: the client was
/// told it failed, and may retry it) is taken back. One that made a history step is undone —
/// prompts, mask and corrector state as before, so a retry does not apply it twice; one that
/// did not (a `predict` of queued prompts, an undo) cannot be, so the region it changed is
/// kept in `pending` and sent with the next prediction, keeping the client's copy of the mask
/// in step.
pub(crate) fn take_back<B: Backend>(
    slot: &mut Slot<'_, B>,
    before: (usize, bool),
    r: &Result<Outcome, ApiError>,
) {
    let (depth, queued) = before;
    if slot.session.undo_depth() > depth {
        slot.session.undo();
        slot.queued = queued;
        return;
    }
    if let Ok(Outcome::Prediction {
        region: Some((lo, hi, _)),
        ..
    }) = r
    {
        slot.pending = Some(
            slot.pending
                .map_or((*lo, *hi), |p| union_box(p, (*lo, *hi))),
        );
    }
    // A timed-out predict: the prompts are still to be answered.
    slot.queued |= queued;
}

/// Widens a prediction's region by what the client has not received yet (`pending`).
pub(crate) fn with_pending<B: Backend>(
    slot: &mut Slot<'_, B>,
    r: Result<Outcome, ApiError>,
) -> Result<Outcome, ApiError> {
    let Some(p) = slot.pending else {
        return r;
    };
    let Ok(Outcome::Prediction { region, .. }) = r else {
        return r;
    };
    slot.pending = None;
    let b = region.map_or(p, |(lo, hi, _)| union_box(p, (lo, hi)));
    Ok(region_of(&slot.session, b))
}

pub(crate) fn model_loop<B: Backend>(
    cfg: &ServeConfig,
    rx: mpsc::Receiver<Job>,
    model: &SegVol<B>,
    corrector: Option<&GruCorrector<B>>,
    device: &B::Device,
) {
    let mut slots: HashMap<String, Slot<'_, B>> = HashMap::new();
    while let Ok(job) = rx.recv() {
        // The client stopped waiting before this job ran (its request timed out and it was
        // told so): the job is dropped, never applied.
        if job.reply.is_closed() {
            tracing::warn!(lease = %short(&job.token), "request timed out before it ran: dropped");
            continue;
        }
        let set_image = matches!(job.op, Op::SetImage { .. });
        let before = slots
            .get(&job.token)
            .map(|s| (s.session.undo_depth(), s.queued));
        let r = match job.op {
            Op::Drop => {
                slots.remove(&job.token);
                Ok(Outcome::Done)
            }
            Op::SetImage {
                data,
                dims,
                spacing,
            } => InteractiveSession::new(model, corrector, device, data, dims, spacing)
                .map(|mut session| {
                    session.set_options(cfg.options);
                    slots.insert(
                        job.token.clone(),
                        Slot {
                            session,
                            queued: false,
                            pending: None,
                        },
                    );
                    Outcome::Done
                })
                .map_err(|e| ApiError::bad(e.to_string())),
            op => match slots.get_mut(&job.token) {
                None => Err(ApiError::bad("set_image first")),
                Some(slot) => act(slot, op),
            },
        };
        if job.reply.is_closed() {
            // The request timed out while the job ran: take it back (see `take_back`); an
            // image the client was told failed to load is dropped with its session.
            tracing::warn!(lease = %short(&job.token), "request timed out while it ran: taken back");
            if set_image {
                slots.remove(&job.token);
            } else if let (Some(slot), Some(b)) = (slots.get_mut(&job.token), before) {
                take_back(slot, b, &r);
            }
            continue;
        }
        let r = match slots.get_mut(&job.token) {
            Some(slot) if !set_image => with_pending(slot, r),
            _ => r,
        };
        let _ = job.reply.send(r);
    }
}

pub(crate) fn region<B: Backend>(s: &InteractiveSession<'_, B>, u: &Update) -> Outcome {
    match u.changed {
        None => Outcome::Prediction {
            ran: u.ran,
            region: None,
        },
        Some(b) => region_of(s, b),
    }
}

/// A prediction carrying the mask inside `b`.
pub(crate) fn region_of<B: Backend>(s: &InteractiveSession<'_, B>, (lo, hi): VoxelBox) -> Outcome {
    Outcome::Prediction {
        ran: true,
        region: Some((lo, hi, s.mask_block((lo, hi)))),
    }
}

pub(crate) fn act<B: Backend>(slot: &mut Slot<'_, B>, op: Op) -> Result<Outcome, ApiError> {
    let s = &mut slot.session;
    let model_err = |e: segvol_interactive::SessionError| match e {
        segvol_interactive::SessionError::Invalid(m) => ApiError::bad(m),
        segvol_interactive::SessionError::Model(m) => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, m)
        }
    };
    let done = |s: &InteractiveSession<'_, B>, u: Update| Ok(region(s, &u));
    match op {
        Op::ResetBuffer => {
            s.reset();
            slot.queued = false;
            Ok(Outcome::Done)
        }
        Op::Box {
            lo,
            hi,
            thin,
            include: true,
            run,
        } => {
            let (lo, hi) = match thin {
                Some(a) => s.extend_2d(a, lo, hi),
                None => (lo, hi),
            };
            if run {
                slot.queued = false;
                let u = s.set_box(lo, hi).map_err(model_err)?;
                done(s, u)
            } else {
                s.queue_box(lo, hi).map_err(model_err)?;
                slot.queued = true;
                Ok(Outcome::Prediction {
                    ran: false,
                    region: None,
                })
            }
        }
        Op::Box {
            lo,
            hi,
            include: false,
            run,
            ..
        } => {
            // No negative box in SegVol: a negative point at its centre (docs/serve.md).
            let c = [0, 1, 2].map(|a| (lo[a] + hi[a]) / 2);
            point(slot, c, false, run, model_err)
        }
        Op::Point { zyx, include, run } => point(slot, zyx, include, run, model_err),
        Op::Text { name } => {
            slot.queued = false;
            let u = s.set_text(name.as_deref()).map_err(model_err)?;
            done(s, u)
        }
        Op::Predict => {
            if !slot.queued {
                return Ok(Outcome::Prediction {
                    ran: false,
                    region: None,
                });
            }
            slot.queued = false;
            let u = slot.session.predict().map_err(model_err)?;
            Ok(region(&slot.session, &u))
        }
        Op::Undo => match s.undo() {
            None => Ok(Outcome::Prediction {
                ran: false,
                region: None,
            }),
            Some(u) => done(s, u),
        },
        Op::SetImage { .. } | Op::Drop => Ok(Outcome::Done),
    }
}

pub(crate) fn point<B: Backend>(
    slot: &mut Slot<'_, B>,
    zyx: [usize; 3],
    include: bool,
    run: bool,
    model_err: impl Fn(segvol_interactive::SessionError) -> ApiError,
) -> Result<Outcome, ApiError> {
    if run {
        slot.queued = false;
        let u = slot.session.add_point(zyx, include).map_err(model_err)?;
        Ok(region(&slot.session, &u))
    } else {
        slot.session.queue_point(zyx, include).map_err(model_err)?;
        slot.queued = true;
        Ok(Outcome::Prediction {
            ran: false,
            region: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    use segvol_backends::Flex;
    use segvol_core::SegVolConfig;

    fn tiny() -> SegVol<Flex> {
        let shared = std::env::var_os("SEGVOL_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
            });
        let device = Default::default();
        let mut model = SegVol::<Flex>::new(&SegVolConfig::tiny(), &device);
        segvol_core::weights::load_segvol(
            &mut model,
            shared.join("fixtures/segvol_tiny/weights.safetensors"),
        )
        .expect("the tiny parity weights");
        model
    }

    /// A smooth blob on a dark background, 16×20×24.
    fn image() -> (Vec<f32>, [usize; 3]) {
        let dims = [16, 20, 24];
        let v = (0..16 * 20 * 24)
            .map(|i| {
                let (z, y, x) = (i / 480, (i / 24) % 20, i % 24);
                let r2 = (z as f32 - 8.0).powi(2)
                    + (y as f32 - 10.0).powi(2)
                    + (x as f32 - 12.0).powi(2);
                if r2 < 30.0 {
                    200.0 + (i % 7) as f32
                } else {
                    (i % 5) as f32
                }
            })
            .collect();
        (v, dims)
    }

    /// A point whose client gave up while it ran is undone (prompts, mask, history as before);
    /// a predict that cannot be undone leaves its region pending, and the next prediction
    /// carries it, with the mask's voxels there.
    #[test]
    fn an_action_whose_client_gave_up_is_taken_back() {
        let model = tiny();
        let device = Default::default();
        let (img, dims) = image();
        let session = InteractiveSession::new(&model, None, &device, img, dims, [1.0; 3]).unwrap();
        let mut slot = Slot {
            session,
            queued: false,
            pending: None,
        };
        act(
            &mut slot,
            Op::Box {
                lo: [4, 5, 6],
                hi: [12, 15, 18],
                thin: None,
                include: true,
                run: true,
            },
        )
        .unwrap();
        let (mask, prompts, depth) = (
            slot.session.mask().to_vec(),
            slot.session.prompts().clone(),
            slot.session.undo_depth(),
        );
        let before = (depth, slot.queued);
        let r = act(
            &mut slot,
            Op::Point {
                zyx: [8, 10, 12],
                include: false,
                run: true,
            },
        );
        assert_eq!(slot.session.undo_depth(), depth + 1);
        take_back(&mut slot, before, &r);
        assert_eq!(slot.session.undo_depth(), depth);
        assert_eq!(slot.session.prompts(), &prompts);
        assert_eq!(slot.session.mask(), &mask[..]);
        assert!(slot.pending.is_none() && !slot.queued);

        // A timed-out predict of queued prompts: nothing to undo; its region stays pending.
        act(
            &mut slot,
            Op::Point {
                zyx: [8, 10, 12],
                include: true,
                run: false,
            },
        )
        .unwrap();
        let before = (slot.session.undo_depth(), slot.queued);
        let made = Ok(Outcome::Prediction {
            ran: true,
            region: Some(([1, 2, 3], [2, 3, 4], Vec::new())),
        });
        slot.queued = false;
        take_back(&mut slot, before, &made);
        assert_eq!(slot.pending, Some(([1, 2, 3], [2, 3, 4])));
        assert!(slot.queued, "the prompts are still to be answered");
        // The next prediction's region grows to hold it; its content is the mask there.
        let next = Ok(Outcome::Prediction {
            ran: true,
            region: Some(([5, 6, 7], [6, 8, 9], Vec::new())),
        });
        match with_pending(&mut slot, next) {
            Ok(Outcome::Prediction {
                ran: true,
                region: Some((lo, hi, content)),
            }) => {
                assert_eq!((lo, hi), ([1, 2, 3], [6, 8, 9]));
                assert_eq!(content.len(), 6 * 7 * 7);
                let m = slot.session.mask();
                assert_eq!(content[0], m[(20 + 2) * 24 + 3]); // voxel (1, 2, 3)
                assert_eq!(content[6 * 7 * 7 - 1], m[(6 * 20 + 8) * 24 + 9]);
            }
            other => panic!("{other:?}"),
        }
        assert!(slot.pending.is_none());
    }

    /// A job whose client stopped waiting is never applied: the image it would have set is not
    /// there for the next request. (Two guards make this hold: the job is skipped when its
    /// client is gone before it runs, and an image set while its client gave up is dropped;
    /// the test fails only when both are removed, as tried.)
    #[test]
    fn a_job_whose_client_gave_up_before_it_ran_is_dropped() {
        let model = tiny();
        let device = Default::default();
        let (img, dims) = image();
        let (tx, rx) = mpsc::channel::<Job>();
        let (gone, gone_rx) = oneshot::channel();
        drop(gone_rx);
        tx.send(Job {
            token: "t".into(),
            op: Op::SetImage {
                data: img,
                dims,
                spacing: [1.0; 3],
            },
            reply: gone,
        })
        .unwrap();
        let (reply, answer) = oneshot::channel();
        tx.send(Job {
            token: "t".into(),
            op: Op::Predict,
            reply,
        })
        .unwrap();
        drop(tx);
        model_loop(&ServeConfig::default(), rx, &model, None, &device);
        match answer.blocking_recv() {
            Ok(Err(e)) => assert!(e.1.contains("set_image first"), "{}", e.1),
            other => panic!("{other:?}"),
        }
    }
}
