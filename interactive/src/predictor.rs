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

use crate::SessionOptions;
use crate::engine::{BoxError, ImageRef, ObjectPrompts, StepLog, object_mask};

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
    last: Vec<Option<(usize, Vec<u8>)>>,
    /// Per class: a text prompt's embedding joined to that class's prompts (SegVol's text
    /// tower, e.g. from the dataset's class names), if any.
    texts: Vec<Option<Vec<f32>>>,
    /// Per step: encoder seconds (first call only), decoder calls, correction rounds and
    /// their milliseconds.
    pub log: Vec<StepLog>,
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

    /// Each positive click adds the intensity-similar voxels connected to it within
    /// `radius_mm` and the box after the model answers ([`crate::grow_clicks`]); `None` keeps
    /// the model's answer as it is. Default:
    /// [`DEFAULT_GROW_RADIUS_MM`](crate::DEFAULT_GROW_RADIUS_MM).
    pub fn with_click_grow(mut self, radius_mm: Option<f64>) -> Self {
        self.options.click_grow_mm = radius_mm;
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
            let mask: Vec<u8> = match &self.last[class] {
                // No new click for this class this step: the same prompts, so the last result
                // stands (and the corrector's hidden state is not advanced).
                Some((seen, m)) if *seen == seq.len() && !seq.is_empty() => m.clone(),
                last => {
                    // This class's last mask (none at the box step) for the mask prompt;
                    // `set_previous_mask` ignores it for a model without one.
                    let previous = last.as_ref().map(|(_, m)| m.as_slice());
                    // The corrector corrects from the first click on (object_mask runs it only
                    // when there are clicks); its state is kept per class.
                    let corr = match self.corrector {
                        Some(corrector) if !seq.is_empty() => {
                            while self.corr.len() <= class {
                                self.corr
                                    .push(CorrectionSession::new(corrector, &self.device));
                            }
                            self.corr.get_mut(class)
                        }
                        _ => None,
                    };
                    object_mask(
                        session,
                        ObjectPrompts {
                            bbox: boxes,
                            clicks: &seq,
                            text: self.texts.get(class).and_then(Option::as_deref),
                            previous,
                        },
                        corr,
                        self.options,
                        ImageRef::U8(req.image),
                        req.dims,
                        req.spacing,
                        &mut log,
                    )?
                }
            };
            let label = u8::try_from(class + 1).map_err(|_| "more than 255 classes")?;
            for (o, _) in out.iter_mut().zip(&mask).filter(|(_, m)| **m > 0) {
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
