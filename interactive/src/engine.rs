//! The one place that drives SegVol + corrector + prompt feedback + zoom-in for an object:
//! [`object_logits`] (and [`object_mask`]: thresholded, with clicks that stick). The CVPR25
//! predictor ([`crate::SegVolPredictor`]), the interactive session
//! ([`crate::InteractiveSession`]) and `segvol segment`'s one-shot prompts are adapters around
//! it: they keep their own bookkeeping (which encoding, which correction state, which previous
//! mask, undo, label maps) and hand it one object's prompts at a time.

use std::time::Instant;

use burn::tensor::backend::Backend;
use segvol_core::pipeline::{Session, VoxelClick};
use segvol_gru::CorrectionSession;
use segvol_sampler::Click;

use crate::SessionOptions;

/// Error type the protocol runner takes.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What one predict call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepLog {
    /// Step number of the request.
    pub step: usize,
    /// Seconds spent encoding (non-zero only when the session was built).
    pub encode_s: f64,
    /// Decoder calls.
    pub decodes: usize,
    /// Seconds in decoder calls (including the paste back to the image grid).
    pub decode_s: f64,
    /// Correction rounds run.
    pub rounds: usize,
    /// Milliseconds in correction rounds (sampler + GRU + write-back).
    pub correct_ms: f64,
}

impl StepLog {
    /// Counts one decoder call that started at `since`.
    fn decoded(&mut self, since: Instant) {
        self.decodes += 1;
        self.decode_s += since.elapsed().as_secs_f64();
    }
}

fn sampler_clicks(seq: &[VoxelClick]) -> Vec<Click> {
    seq.iter()
        .map(|c| Click {
            zyx: c.zyx,
            foreground: c.foreground,
        })
        .collect()
}

/// How each step decodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Run the zoom-in sliding window after the zoom-out pass.
    pub zoom_in: bool,
    /// Prompt feedback: up to this many sign-flipped corrected voxels become point prompts
    /// for a re-decode (0 = off).
    pub feedback: usize,
}

/// The corrected logits (image grid) for a box and a click sequence: rounds `r+1..=n` are run,
/// where `r` is the rounds the correction session has already seen (0 for a fresh one, which
/// then replays every round: decode with the first i clicks, correct). A session that has seen
/// more rounds than there are clicks is reset first (clicks undone).
///
/// # Errors
/// The decoder's or the corrector's error.
pub fn corrected_logits<B: Backend>(
    session: &Session<'_, B>,
    opts: DecodeOptions,
    cs: &mut CorrectionSession<'_, B>,
    dims: [usize; 3],
    boxes: Option<([usize; 3], [usize; 3])>,
    seq: &[VoxelClick],
    log: &mut StepLog,
) -> Result<Vec<f32>, BoxError> {
    if cs.rounds() > seq.len() {
        cs.reset();
    }
    let mut logits = Vec::new();
    for i in cs.rounds() + 1..=seq.len() {
        let t = Instant::now();
        logits = decode(session, opts.zoom_in, boxes, &seq[..i])?;
        log.decoded(t);
        let rep = cs.step(dims, &mut logits, &sampler_clicks(&seq[..i]))?;
        log.rounds += 1;
        log.correct_ms += rep.total_ms();
        // Prompt feedback on the current step's round only (earlier rounds of a replay just
        // rebuild the hidden state, which never reads the re-decoded logits).
        if opts.feedback > 0 && i == seq.len() && !rep.flips.is_empty() {
            let mut prompts = seq.to_vec();
            prompts.extend(rep.flips.iter().take(opts.feedback).map(|f| VoxelClick {
                zyx: f.zyx,
                foreground: f.foreground,
            }));
            let t = Instant::now();
            logits = decode(session, opts.zoom_in, boxes, &prompts)?;
            log.decoded(t);
        }
    }
    if logits.is_empty() {
        // Nothing new to correct (no clicks, or all seen): the plain prediction.
        logits = decode(session, opts.zoom_in, boxes, seq)?;
        log.decodes += 1;
    }
    Ok(logits)
}

/// Image-grid logits: the zoom-out pass from the cached embedding, or zoom-out + zoom-in.
pub fn decode<B: Backend>(
    session: &Session<'_, B>,
    zoom_in: bool,
    boxes: Option<([usize; 3], [usize; 3])>,
    seq: &[VoxelClick],
) -> Result<Vec<f32>, BoxError> {
    decode_with(session, zoom_in, boxes, seq, &mut |_, _| {})
}

/// [`decode`], telling `progress` each zoom-in window done `(done, total)`.
fn decode_with<B: Backend>(
    session: &Session<'_, B>,
    zoom_in: bool,
    boxes: Option<([usize; 3], [usize; 3])>,
    seq: &[VoxelClick],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>, BoxError> {
    if zoom_in {
        Ok(session.predict_zoom_in(boxes, seq, progress)?.0)
    } else {
        Ok(session.predict(boxes, seq)?)
    }
}

/// One object's prompts for one prediction.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectPrompts<'p> {
    /// Its box, inclusive `(lo, hi)` `[z, y, x]`.
    pub bbox: Option<([usize; 3], [usize; 3])>,
    /// Its clicks in the order they were made.
    pub clicks: &'p [VoxelClick],
    /// A text embedding joined to the prompts
    /// ([`SegVol::embed_text`](segvol_core::SegVol::embed_text)).
    pub text: Option<&'p [f32]>,
    /// The mask the mask prompt is given (non-zero = object; models with `mask_prompt`, others
    /// ignore it). The caller decides when there is one: the session gives the mask the user
    /// sees when a click corrects it, the predictor the class's last mask after the first step.
    pub previous: Option<&'p [u8]>,
}

/// Sets the object's text and previous mask on the encoding (both replace the last object's).
fn set_prompts<B: Backend>(
    session: &mut Session<'_, B>,
    prompts: &ObjectPrompts<'_>,
) -> Result<(), BoxError> {
    session.set_text(prompts.text.map(<[f32]>::to_vec))?;
    session.set_previous_mask(prompts.previous)?;
    Ok(())
}

/// Image-grid logits for one object: sets its text and previous mask on the encoding, then
/// decodes box + clicks (zoom-out from the cached embedding, or with the zoom-in windows), and
/// when `corr` is given and there are clicks, runs the correction rounds not yet run (prompt
/// feedback per `options`). `progress` hears the zoom-in windows `(done, total)` of a plain
/// decode. `log` counts decodes, rounds and their time.
///
/// # Errors
/// The model's or the corrector's error (a text given to a model without a text tower, a
/// previous mask of the wrong size).
pub fn object_logits<B: Backend>(
    session: &mut Session<'_, B>,
    prompts: ObjectPrompts<'_>,
    corr: Option<&mut CorrectionSession<'_, B>>,
    options: SessionOptions,
    dims: [usize; 3],
    log: &mut StepLog,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>, BoxError> {
    set_prompts(session, &prompts)?;
    let session = &*session;
    match corr {
        Some(cs) if !prompts.clicks.is_empty() => corrected_logits(
            session,
            DecodeOptions {
                zoom_in: options.zoom_in,
                feedback: options.feedback,
            },
            cs,
            dims,
            prompts.bbox,
            prompts.clicks,
            log,
        ),
        _ => {
            let t = Instant::now();
            let logits = decode_with(
                session,
                options.zoom_in,
                prompts.bbox,
                prompts.clicks,
                progress,
            )?;
            log.decoded(t);
            Ok(logits)
        }
    }
}

/// The image as a front end holds it, for the rules that read intensities (the box's own
/// intensities, [`crate::BoxIntensity`]; positive clicks that reach, [`crate::grow_clicks`]):
/// the challenge predictor's `u8` volume or the session's `f32` one.
#[derive(Debug, Clone, Copy)]
pub enum ImageRef<'a> {
    /// The challenge's `imgs` (0..255).
    U8(&'a [u8]),
    /// An image in its own units (HU, MR intensity).
    F32(&'a [f32]),
}

impl ImageRef<'_> {
    /// The intensity of voxel `i` (raster index); NaN beyond the image.
    fn value(&self, i: usize) -> f64 {
        match self {
            ImageRef::U8(im) => im.get(i).map_or(f64::NAN, |&v| f64::from(v)),
            ImageRef::F32(im) => im.get(i).map_or(f64::NAN, |&v| f64::from(v)),
        }
    }
}

/// A prediction's logits on the image grid: the full buffer (zoom-in, corrector), or the
/// model grid read voxel by voxel (the live path, [`Session::predict_lookup`]).
enum Logits {
    Full(Vec<f32>),
    Grid(segvol_core::pipeline::GridLogits),
}

impl Logits {
    /// The logit of voxel `p = [z, y, x]` of a volume of shape `dims`.
    fn at(&self, p: [usize; 3], dims: [usize; 3]) -> f32 {
        match self {
            Logits::Full(l) => l
                .get((p[0] * dims[1] + p[1]) * dims[2] + p[2])
                .copied()
                .unwrap_or(-1e4),
            Logits::Grid(g) => g.at(p),
        }
    }

    fn mask(&self) -> Vec<u8> {
        match self {
            Logits::Full(l) => l.iter().map(|&v| u8::from(v > 0.0)).collect(),
            Logits::Grid(g) => g.mask(),
        }
    }
}

/// [`object_logits`] as a mask (`logits > 0` → 1), then, each when `options` has it on and in
/// this order: the box's own intensities ([`crate::BoxIntensity`], with a box: the box is
/// re-thresholded with the intensity model's offsets; the clicks teach the model too), the
/// box's smoothness ([`crate::smooth_box`], on the logits with those offsets: it re-sets the
/// box's voxels), negative clicks that reach
/// ([`crate::clear_negative_clicks`], on the logits with those offsets), positive clicks that
/// reach ([`crate::grow_clicks_until`], stopped where those logits are sure of background)
/// and clicks that stick ([`crate::honour`]; so a click's own neighbourhood wins over both
/// regions).
///
/// # Errors
/// As [`object_logits`].
#[allow(clippy::too_many_arguments)]
pub fn object_mask<B: Backend>(
    session: &mut Session<'_, B>,
    prompts: ObjectPrompts<'_>,
    corr: Option<&mut CorrectionSession<'_, B>>,
    options: SessionOptions,
    image: ImageRef<'_>,
    dims: [usize; 3],
    spacing: [f64; 3],
    log: &mut StepLog,
) -> Result<Vec<u8>, BoxError> {
    let corrects = corr.is_some() && !prompts.clicks.is_empty();
    let logits = if corrects || options.zoom_in {
        Logits::Full(object_logits(
            session,
            prompts,
            corr,
            options,
            dims,
            log,
            &mut |_, _| {},
        )?)
    } else {
        // The live path (zoom-out, no correction round): the model grid read voxel by voxel,
        // with no full-grid float logits (`Session::predict_lookup`, the same values).
        set_prompts(session, &prompts)?;
        let t = Instant::now();
        let grid = session.predict_lookup(prompts.bbox, prompts.clicks)?;
        log.decoded(t);
        Logits::Grid(grid)
    };
    let (bbox, clicks) = (prompts.bbox, prompts.clicks);
    let mut mask = logits.mask();
    let value = |i: usize| image.value(i);
    let raw = |p: [usize; 3]| logits.at(p, dims);
    let intensity = bbox.filter(|_| options.box_intensity).and_then(|b| {
        crate::BoxIntensity::fit_with(dims, b, value, raw, options.intensity_fit(clicks))
    });
    let idx = |p: [usize; 3]| (p[0] * dims[1] + p[1]) * dims[2] + p[2];
    let logit = |p: [usize; 3]| {
        raw(p)
            + intensity
                .as_ref()
                .map_or(0.0, |m| m.offset(p, value(idx(p))))
    };
    match (bbox.filter(|_| options.box_smoothing), &intensity) {
        // The smoothness re-sets every voxel of the box from the logits with the offsets: the
        // intensities' own re-threshold of the box would be overwritten, so it is skipped.
        (Some(b), _) => {
            crate::smooth_box(&mut mask, dims, b, logit);
        }
        (None, Some(m)) => {
            m.apply(&mut mask, value, raw);
        }
        (None, None) => {}
    }
    if let Some(r) = options.negative_reach_mm {
        crate::clear_negative_clicks(&mut mask, dims, spacing, clicks, bbox, r, logit);
    }
    if let Some(r) = options.click_grow_mm {
        let stops = |p: [usize; 3]| options.grow_floor && logit(p) <= crate::GROW_FLOOR;
        match image {
            ImageRef::U8(im) => {
                crate::grow_clicks_until(&mut mask, im, dims, spacing, clicks, bbox, r, stops)
            }
            ImageRef::F32(im) => {
                crate::grow_clicks_until(&mut mask, im, dims, spacing, clicks, bbox, r, stops)
            }
        };
    }
    if let Some(r) = options.click_radius_mm {
        crate::honour_clicks(&mut mask, dims, spacing, prompts.clicks, r, 1, 0);
    }
    Ok(mask)
}
