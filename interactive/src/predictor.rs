//! SegVol (and optionally the GRU corrector) as a CVPR25 [`Predictor`]: one encoder pass per
//! case, then per class and step the prompt encoder + decoder with the box and the class's
//! clicks so far (GRU_CORRECTION.md §6, §8: the baseline re-decodes box + accumulated clicks as
//! point prompts; the corrector then corrects those logits). Later classes overwrite earlier
//! ones, as the reference does.
//!
//! The corrector keeps one [`CorrectionSession`] per class, so its hidden state is carried from
//! step to step inside one run. A fresh predictor given clicks it has not seen (the challenge
//! starts a new process per step) replays the rounds: decode with the first i clicks and
//! correct, for i = 1..=n (GRU_CORRECTION.md §9.2), which rebuilds the same hidden state.

use std::time::Instant;

use burn::tensor::backend::Backend;
use segvol_core::SegVol;
use segvol_core::pipeline::{Session, VoxelClick};
use segvol_eval::protocol::{Clicks, PredictRequest, Predictor};
use segvol_gru::{CorrectionSession, GruCorrector};
use segvol_sampler::Click;

use crate::SessionOptions;

/// Error type the protocol runner takes.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// SegVol (+ corrector) under the CVPR25 protocol.
pub struct SegVolPredictor<'a, B: Backend> {
    model: &'a SegVol<B>,
    corrector: Option<&'a GruCorrector<B>>,
    device: B::Device,
    /// Zoom-in, clicks that stick, prompt feedback.
    options: SessionOptions,
    session: Option<Session<'a, B>>,
    corr: Vec<CorrectionSession<'a, B>>,
    /// Per class: the clicks seen and the mask of the last prediction (reused when a step
    /// brings this class no new click).
    last: Vec<Option<(usize, Vec<bool>)>>,
    /// Per class: a text prompt's embedding joined to that class's prompts (SegVol's text
    /// tower, e.g. from the dataset's class names), if any.
    texts: Vec<Option<Vec<f32>>>,
    /// Per step: encoder seconds (first call only), decoder calls, correction rounds and
    /// their milliseconds.
    pub log: Vec<StepLog>,
}

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

impl<'a, B: Backend> SegVolPredictor<'a, B> {
    /// Also run the zoom-in sliding window (SEGVOL.md §9.2–9.3) at every step: more accurate,
    /// but each step re-encodes every window instead of re-decoding the cached embedding.
    pub fn with_zoom_in(mut self, on: bool) -> Self {
        self.options.zoom_in = on;
        self
    }

    /// The prompt-feedback variant (GRU_CORRECTION.md §6, D9): after each correction, up to `m`
    /// corrected voxels whose prediction changed side (largest |δ| first) are added as point
    /// prompts and SegVol re-decodes; 0 = off (sparse write-back only).
    pub fn with_feedback(mut self, m: usize) -> Self {
        self.options.feedback = m;
        self
    }

    /// Each click fixes its voxel and the wrong-labelled region within `radius_mm` around it
    /// after the model answers ([`crate::honour`]); `None` keeps the model's answer as it is.
    /// Default: [`DEFAULT_CLICK_RADIUS_MM`](crate::DEFAULT_CLICK_RADIUS_MM).
    pub fn with_click_radius(mut self, radius_mm: Option<f64>) -> Self {
        self.options.click_radius_mm = radius_mm;
        self
    }

    /// All the engine settings at once (zoom-in, clicks that stick, prompt feedback).
    pub fn with_options(mut self, options: SessionOptions) -> Self {
        self.options = options;
        self
    }

    /// The engine settings in use; a new predictor starts with [`SessionOptions::default`].
    pub fn options(&self) -> SessionOptions {
        self.options
    }

    /// Per class (label `i + 1` ↔ index `i`), a text embedding
    /// ([`SegVol::embed_text`](segvol_core::SegVol::embed_text) of its name) added to that
    /// class's box and clicks at every step.
    pub fn with_class_texts(mut self, texts: Vec<Option<Vec<f32>>>) -> Self {
        self.texts = texts;
        self
    }

    /// A predictor for one case; `corrector` = `None` is the plain SegVol baseline.
    pub fn new(
        model: &'a SegVol<B>,
        corrector: Option<&'a GruCorrector<B>>,
        device: &B::Device,
    ) -> Self {
        SegVolPredictor {
            model,
            corrector,
            device: device.clone(),
            options: SessionOptions::default(),
            session: None,
            corr: Vec::new(),
            last: Vec::new(),
            texts: Vec::new(),
            log: Vec::new(),
        }
    }
}

/// A class's clicks in the order they were made (the protocol's `order` interleaves the fg and
/// bg lists; clicks without an order entry follow, fg first).
pub fn click_sequence(c: &Clicks) -> Vec<VoxelClick> {
    let (mut f, mut b) = (c.fg.iter(), c.bg.iter());
    let mut seq = Vec::with_capacity(c.fg.len() + c.bg.len());
    for o in &c.order {
        let next = match o {
            Some(true) => f.next().map(|&zyx| (zyx, true)),
            Some(false) => b.next().map(|&zyx| (zyx, false)),
            None => None,
        };
        if let Some((zyx, foreground)) = next {
            seq.push(VoxelClick { zyx, foreground });
        }
    }
    seq.extend(f.map(|&zyx| VoxelClick {
        zyx,
        foreground: true,
    }));
    seq.extend(b.map(|&zyx| VoxelClick {
        zyx,
        foreground: false,
    }));
    seq
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
        log.decodes += 1;
        log.decode_s += t.elapsed().as_secs_f64();
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
            log.decodes += 1;
            log.decode_s += t.elapsed().as_secs_f64();
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
    if zoom_in {
        Ok(session.predict_zoom_in(boxes, seq, &mut |_, _| {})?.0)
    } else {
        Ok(session.predict(boxes, seq)?)
    }
}

impl<B: Backend> Predictor for SegVolPredictor<'_, B> {
    fn predict(&mut self, req: &PredictRequest<'_>) -> Result<Vec<u8>, BoxError> {
        let n: usize = req.dims.iter().product();
        let mut log = StepLog {
            step: req.step,
            ..StepLog::default()
        };
        if self.session.is_none() {
            let t = Instant::now();
            let image: Vec<f32> = req.image.iter().map(|&v| f32::from(v)).collect();
            let mut cover: Vec<[usize; 3]> = Vec::new();
            if let Some(b) = req.boxes {
                cover.extend(b.iter().flat_map(|b| [b.lo, b.hi]));
            }
            for c in req.clicks {
                cover.extend(c.fg.iter().chain(&c.bg));
            }
            self.session = Some(Session::new(
                self.model,
                &image,
                req.dims,
                &cover,
                &self.device,
            )?);
            log.encode_s = t.elapsed().as_secs_f64();
        }
        let Some(session) = self.session.as_mut() else {
            return Err("no session".into());
        };
        let mut out = vec![0u8; n];
        for class in 0..req.n_classes {
            session.set_text(self.texts.get(class).cloned().flatten())?;
            // A model with the mask prompt is given this class's last mask (none at the box
            // step); other models ignore it.
            let previous = self
                .last
                .get(class)
                .and_then(Option::as_ref)
                .filter(|_| self.model.config().mask_prompt)
                .map(|(_, m)| m.as_slice());
            session.set_previous_mask(previous)?;
            let session = &*session;
            let boxes = req.boxes.and_then(|b| b.get(class)).map(|b| (b.lo, b.hi));
            let seq = req
                .clicks
                .get(class)
                .map(click_sequence)
                .unwrap_or_default();
            if boxes.is_none() && seq.is_empty() {
                continue;
            }
            if self.last.len() <= class {
                self.last.resize(class + 1, None);
            }
            let mut mask: Vec<bool> = match (&self.last[class], self.corrector) {
                // No new click for this class this step: the same prompts, so the last result
                // stands (and the corrector's hidden state is not advanced).
                (Some((seen, m)), _) if *seen == seq.len() && !seq.is_empty() => m.clone(),
                (_, Some(corrector)) if !seq.is_empty() => {
                    while self.corr.len() <= class {
                        self.corr
                            .push(CorrectionSession::new(corrector, &self.device));
                    }
                    let logits = corrected_logits(
                        session,
                        DecodeOptions {
                            zoom_in: self.options.zoom_in,
                            feedback: self.options.feedback,
                        },
                        &mut self.corr[class],
                        req.dims,
                        boxes,
                        &seq,
                        &mut log,
                    )?;
                    logits.iter().map(|&l| l > 0.0).collect()
                }
                _ => {
                    let t = Instant::now();
                    let logits = decode(session, self.options.zoom_in, boxes, &seq)?;
                    log.decodes += 1;
                    log.decode_s += t.elapsed().as_secs_f64();
                    logits.iter().map(|&l| l > 0.0).collect()
                }
            };
            if let Some(r) = self.options.click_radius_mm {
                crate::honour_clicks(&mut mask, req.dims, req.spacing, &seq, r, true, false);
            }
            let label = u8::try_from(class + 1).map_err(|_| "more than 255 classes")?;
            for (o, _) in out.iter_mut().zip(&mask).filter(|(_, m)| **m) {
                *o = label;
            }
            self.last[class] = Some((seq.len(), mask));
        }
        self.log.push(log);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GRU_CORRECTION.md §9.2: a fresh predictor handed the accumulated clicks (the challenge's
    /// process-per-step) replays the rounds and gives exactly what a predictor that saw every
    /// step gives; and the corrector really changes the result.
    #[test]
    fn replaying_the_rounds_reproduces_the_carried_hidden_state() {
        use segvol_backends::Flex;
        use segvol_eval::protocol::Box3;
        let shared = std::env::var_os("SEGVOL_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
            });
        let device = Default::default();
        let mut model = SegVol::<Flex>::new(&segvol_core::SegVolConfig::tiny(), &device);
        segvol_core::weights::load_segvol(
            &mut model,
            shared.join("fixtures/segvol_tiny/weights.safetensors"),
        )
        .unwrap();
        let corrector = segvol_gru::load_corrector::<Flex>(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../gru-corrector/tests/data/corrector.safetensors"),
            &device,
        )
        .unwrap();
        let dims = [16, 32, 32];
        let image: Vec<u8> = (0..dims.iter().product::<usize>())
            .map(|i| ((i * 7919) % 251) as u8)
            .collect();
        let boxes = [Box3 {
            lo: [3, 6, 6],
            hi: [12, 25, 26],
        }];
        let all = [
            ([8, 15, 15], true),
            ([4, 8, 9], false),
            ([10, 20, 22], true),
        ];
        fn req<'r>(
            image: &'r [u8],
            boxes: &'r [Box3],
            clicks: &'r [Clicks],
            step: usize,
        ) -> PredictRequest<'r> {
            PredictRequest {
                dims: [16, 32, 32],
                spacing: [1.0; 3],
                image,
                n_classes: 1,
                boxes: Some(boxes),
                clicks,
                prev_pred: None,
                step,
            }
        }
        let mut carried = SegVolPredictor::new(&model, Some(&corrector), &device);
        let mut clicks = vec![Clicks::default()];
        let mut last = carried.predict(&req(&image, &boxes, &clicks, 1)).unwrap();
        for (i, &(zyx, fg)) in all.iter().enumerate() {
            if fg {
                clicks[0].fg.push(zyx);
            } else {
                clicks[0].bg.push(zyx);
            }
            clicks[0].order.push(Some(fg));
            last = carried
                .predict(&req(&image, &boxes, &clicks, i + 2))
                .unwrap();
        }
        assert!(carried.log[1..].iter().all(|l| l.rounds == 1));
        let mut fresh = SegVolPredictor::new(&model, Some(&corrector), &device);
        let replayed = fresh.predict(&req(&image, &boxes, &clicks, 4)).unwrap();
        assert_eq!(fresh.log[0].rounds, 3);
        assert_eq!(replayed, last);
        let mut plain = SegVolPredictor::new(&model, None, &device);
        assert_ne!(
            plain.predict(&req(&image, &boxes, &clicks, 4)).unwrap(),
            last
        );
    }

    #[test]
    fn clicks_come_back_in_time_order() {
        let c = Clicks {
            fg: vec![[1, 1, 1], [3, 3, 3]],
            bg: vec![[2, 2, 2]],
            order: vec![Some(true), None, Some(false), Some(true)],
        };
        let seq: Vec<([usize; 3], bool)> = click_sequence(&c)
            .iter()
            .map(|v| (v.zyx, v.foreground))
            .collect();
        assert_eq!(
            seq,
            vec![([1, 1, 1], true), ([2, 2, 2], false), ([3, 3, 3], true)]
        );
        // Without an order: fg then bg.
        let c = Clicks {
            fg: vec![[1, 1, 1]],
            bg: vec![[2, 2, 2]],
            order: vec![],
        };
        assert_eq!(click_sequence(&c).len(), 2);
    }
}
