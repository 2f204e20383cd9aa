//! [`InteractiveSession`]: the interactive loop a viewer or a server drives, one image at a
//! time: a box (3-D, or 2-D on one slice), positive and negative points, the GRU corrector's
//! hidden state across clicks, undo (a history), reset, several objects in one label map, the
//! current mask and the region each action changed, timings.
//!
//! The encoder runs once per image (again only if a prompt falls outside the crop it encoded);
//! every action re-decodes from that cache. Axes are the array's own (`[a0, a1, a2]`, usually
//! `[z, y, x]`); nothing is reoriented.

use std::time::Instant;

use burn::tensor::backend::Backend;
use segvol_core::SegVol;
use segvol_core::pipeline::{Session, VoxelClick};
use segvol_gru::{CorrectionSession, GruCorrector};

use crate::SessionOptions;
use crate::engine::{ImageRef, ObjectPrompts, StepLog, object_mask};

/// Errors of an interactive session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The image or a prompt does not fit.
    #[error("{0}")]
    Invalid(String),
    /// The model failed.
    #[error("model: {0}")]
    Model(String),
}

/// Inclusive voxel box `(lo, hi)` in array axes.
pub type VoxelBox = ([usize; 3], [usize; 3]);

/// The prompts of the current object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompts {
    /// The box, if any (the last one given wins: SegVol takes one box).
    pub bbox: Option<VoxelBox>,
    /// Points in time order.
    pub clicks: Vec<VoxelClick>,
    /// A structure's name as a text prompt (SegVol's CLIP tower), if any.
    pub text: Option<String>,
}

/// What one action did.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Whether the model ran (false: nothing to predict from, or nothing changed).
    pub ran: bool,
    /// Tight inclusive box of the voxels of the current object's mask that changed, if any.
    pub changed: Option<VoxelBox>,
    /// Seconds: encoding (0 unless the image was (re-)encoded), decoding + correction.
    pub encode_s: f64,
    /// Seconds of decoding and correction.
    pub decode_s: f64,
}

/// One interactive session on one image.
pub struct InteractiveSession<'m, B: Backend> {
    model: &'m SegVol<B>,
    corrector: Option<&'m GruCorrector<B>>,
    device: B::Device,
    image: Vec<f32>,
    dims: [usize; 3],
    spacing: [f64; 3],
    /// Zoom-in, clicks that stick, prompt feedback.
    options: SessionOptions,
    use_corrector: bool,
    encoded: Option<Session<'m, B>>,
    corr: Option<CorrectionSession<'m, B>>,
    prompts: Prompts,
    mask: Vec<u8>,
    /// Committed objects: label `k` = the `k`-th object (0 = background).
    labels: Vec<u8>,
    objects: u8,
    history: Vec<Snapshot<'m, B>>,
    max_history: usize,
}

/// What undo restores: the prompts, the corrector's state and the mask as they were before an
/// action. Of the mask only the box the action changed is kept (its old voxels), so a step of
/// history costs the changed box, not the whole grid: 32 clicks that each touch a
/// 100×100×100 region keep 32 MB, where whole masks of a 300×512×512 CT kept 2.5 GB.
struct Snapshot<'m, B: Backend> {
    prompts: Prompts,
    /// The changed box and its voxels before the action (`None`: the mask did not change).
    block: Option<(VoxelBox, Vec<u8>)>,
    corr: Option<CorrectionSession<'m, B>>,
}

/// The voxels of `m` (shape `dims`) in the inclusive box `b`, C order.
fn take_block(m: &[u8], dims: [usize; 3], b: VoxelBox) -> Vec<u8> {
    let (lo, hi) = b;
    let mut out = Vec::with_capacity((0..3).map(|a| hi[a] + 1 - lo[a]).product());
    for z in lo[0]..=hi[0] {
        for y in lo[1]..=hi[1] {
            let row = (z * dims[1] + y) * dims[2];
            out.extend_from_slice(&m[row + lo[2]..=row + hi[2]]);
        }
    }
    out
}

/// The smallest box holding both.
pub fn union_box(a: VoxelBox, b: VoxelBox) -> VoxelBox {
    (
        std::array::from_fn(|k| a.0[k].min(b.0[k])),
        std::array::from_fn(|k| a.1[k].max(b.1[k])),
    )
}

/// Writes `block` (as [`take_block`] took it) back into `m`.
fn put_block(m: &mut [u8], dims: [usize; 3], b: VoxelBox, block: &[u8]) {
    let (lo, hi) = b;
    let nx = hi[2] + 1 - lo[2];
    let mut k = 0;
    for z in lo[0]..=hi[0] {
        for y in lo[1]..=hi[1] {
            let row = (z * dims[1] + y) * dims[2];
            m[row + lo[2]..=row + hi[2]].copy_from_slice(&block[k..k + nx]);
            k += nx;
        }
    }
}

fn inside(p: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> bool {
    (0..3).all(|a| p[a] >= lo[a] && p[a] < hi[a])
}

impl<'m, B: Backend> InteractiveSession<'m, B> {
    /// A session on `image` (`dims` voxels, array order) with its `spacing` (mm per axis, used
    /// only to extend 2-D boxes). The corrector, when given, corrects every click.
    ///
    /// # Errors
    /// [`SessionError::Invalid`] for an empty image, a length that is not `dims`, or
    /// non-finite voxels.
    pub fn new(
        model: &'m SegVol<B>,
        corrector: Option<&'m GruCorrector<B>>,
        device: &B::Device,
        image: Vec<f32>,
        dims: [usize; 3],
        spacing: [f64; 3],
    ) -> Result<Self, SessionError> {
        let n: usize = dims.iter().product();
        if n == 0 || image.len() != n {
            return Err(SessionError::Invalid(format!(
                "image of {} voxels does not fill shape {dims:?}",
                image.len()
            )));
        }
        if image.iter().any(|v| !v.is_finite()) {
            return Err(SessionError::Invalid(
                "the image holds NaN or infinite voxels".into(),
            ));
        }
        let spacing = spacing.map(|s| if s.is_finite() && s > 0.0 { s } else { 1.0 });
        Ok(InteractiveSession {
            model,
            corrector,
            device: device.clone(),
            image,
            dims,
            spacing,
            options: SessionOptions::default(),
            use_corrector: corrector.is_some(),
            encoded: None,
            corr: None,
            prompts: Prompts::default(),
            mask: vec![0; n],
            labels: vec![0; n],
            objects: 0,
            history: Vec::new(),
            max_history: 32,
        })
    }

    /// Each click fixes its voxel and the wrong-labelled region within `radius_mm` around it
    /// after the model answers ([`crate::honour`], on by default with
    /// [`DEFAULT_CLICK_RADIUS_MM`](crate::DEFAULT_CLICK_RADIUS_MM)); `None` shows the model's
    /// answer as it is.
    pub fn set_click_radius(&mut self, radius_mm: Option<f64>) {
        self.options.click_radius_mm = radius_mm;
    }

    /// Each positive click adds the intensity-similar voxels connected to it within
    /// `radius_mm` and the box after the model answers ([`crate::grow_clicks`], on by default
    /// with [`DEFAULT_GROW_RADIUS_MM`](crate::DEFAULT_GROW_RADIUS_MM)); `None` shows the
    /// model's answer as it is.
    pub fn set_click_grow(&mut self, radius_mm: Option<f64>) {
        self.options.click_grow_mm = radius_mm;
    }

    /// All the engine settings at once (zoom-in, clicks that stick, prompt feedback with a
    /// corrector); they apply from the next prediction.
    pub fn set_options(&mut self, options: SessionOptions) {
        self.options = options;
    }

    /// The engine settings in use; a new session starts with [`SessionOptions::default`].
    pub fn options(&self) -> SessionOptions {
        self.options
    }

    /// Also run SegVol's zoom-in (re-encodes the windows at every action: slower, finer).
    pub fn set_zoom_in(&mut self, on: bool) {
        self.options.zoom_in = on;
    }

    /// Turn the corrector on or off (off, or none loaded: the plain SegVol prediction).
    pub fn set_corrector(&mut self, on: bool) {
        self.use_corrector = on && self.corrector.is_some();
        self.corr = None;
    }

    /// Shape of the image.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// The current object's mask (0/1).
    pub fn mask(&self) -> &[u8] {
        &self.mask
    }

    /// The label map: committed objects 1..=k, and the current object on top as `k + 1`.
    pub fn label_map(&self) -> Vec<u8> {
        let cur = self.objects.saturating_add(1);
        self.labels
            .iter()
            .zip(&self.mask)
            .map(|(&l, &m)| if m > 0 { cur } else { l })
            .collect()
    }

    /// The current object's mask inside the inclusive box `b` (inside the image), C order.
    pub fn mask_block(&self, b: VoxelBox) -> Vec<u8> {
        take_block(&self.mask, self.dims, b)
    }

    /// The label map inside the inclusive box `lo..=hi`, C order (what a viewer repaints after
    /// an action, without copying the whole map). `None` for a box outside the image.
    pub fn label_block(&self, lo: [usize; 3], hi: [usize; 3]) -> Option<Vec<u8>> {
        let d = self.dims;
        if (0..3).any(|a| lo[a] > hi[a] || hi[a] >= d[a]) {
            return None;
        }
        let cur = self.objects.saturating_add(1);
        let mut out = Vec::with_capacity((0..3).map(|a| hi[a] + 1 - lo[a]).product());
        for z in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                let row = (z * d[1] + y) * d[2];
                let r = row + lo[2]..=row + hi[2];
                out.extend(
                    self.labels[r.clone()]
                        .iter()
                        .zip(&self.mask[r])
                        .map(|(&l, &m)| if m > 0 { cur } else { l }),
                );
            }
        }
        Some(out)
    }

    /// The current object's prompts.
    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }

    /// Actions that can be undone.
    pub fn undo_depth(&self) -> usize {
        self.history.len()
    }

    /// Bytes of mask the undo history holds: the changed box of each of the last 32 actions
    /// (at most 32 whole masks, when every action changes the whole grid).
    pub fn history_bytes(&self) -> usize {
        self.history
            .iter()
            .filter_map(|s| s.block.as_ref().map(|(_, b)| b.len()))
            .sum()
    }

    fn check(&self, p: [usize; 3], what: &str) -> Result<(), SessionError> {
        if (0..3).all(|a| p[a] < self.dims[a]) {
            Ok(())
        } else {
            Err(SessionError::Invalid(format!(
                "{what} {p:?} is outside the image {:?}",
                self.dims
            )))
        }
    }

    fn check_box(&self, lo: [usize; 3], hi: [usize; 3]) -> Result<(), SessionError> {
        self.check(lo, "box corner")?;
        self.check(hi, "box corner")?;
        if (0..3).any(|a| lo[a] > hi[a]) {
            return Err(SessionError::Invalid(format!(
                "box {lo:?}..={hi:?} is inverted"
            )));
        }
        Ok(())
    }

    fn push_history(&mut self) {
        self.history.push(Snapshot {
            prompts: self.prompts.clone(),
            block: None,
            corr: self.corr.clone(),
        });
        if self.history.len() > self.max_history {
            self.history.remove(0);
        }
    }

    /// Sets the object's 3-D box (inclusive corners) and predicts.
    ///
    /// # Errors
    /// A corner outside the image or inverted; the model's error.
    pub fn set_box(&mut self, lo: [usize; 3], hi: [usize; 3]) -> Result<Update, SessionError> {
        self.check_box(lo, hi)?;
        self.push_history();
        self.prompts.bbox = Some((lo, hi));
        self.corr = None; // the rounds so far were corrected under the old box
        self.run()
    }

    /// A 2-D box drawn on one slice (`lo[axis] == hi[axis]`): SegVol takes 3-D boxes, so it is
    /// extended along `axis` by half the shorter in-plane side, in millimetres (spacing-aware),
    /// on each side, clipped to the image. Deliberate: a guess of a roundish object's depth.
    ///
    /// # Errors
    /// As [`InteractiveSession::set_box`], or a box that is not one slice thick on `axis`.
    pub fn set_box_2d(
        &mut self,
        axis: usize,
        lo: [usize; 3],
        hi: [usize; 3],
    ) -> Result<Update, SessionError> {
        if axis > 2 || lo[axis] != hi[axis] {
            return Err(SessionError::Invalid(format!(
                "a 2-D box must be one slice thick on axis {axis}: {lo:?}..={hi:?}"
            )));
        }
        let (lo3, hi3) = self.extend_2d(axis, lo, hi);
        self.set_box(lo3, hi3)
    }

    /// The 3-D box [`InteractiveSession::set_box_2d`] uses.
    pub fn extend_2d(&self, axis: usize, lo: [usize; 3], hi: [usize; 3]) -> VoxelBox {
        let side_mm = (0..3)
            .filter(|&a| a != axis)
            .map(|a| (hi[a].saturating_sub(lo[a]) + 1) as f64 * self.spacing[a])
            .fold(f64::INFINITY, f64::min);
        let ext = ((side_mm / 2.0) / self.spacing[axis]).round().max(1.0) as usize;
        let (mut l, mut h) = (lo, hi);
        l[axis] = lo[axis].saturating_sub(ext);
        h[axis] = (hi[axis] + ext).min(self.dims[axis] - 1);
        (l, h)
    }

    /// Sets (or, with `None`, clears) the object's text prompt, a structure's name such as
    /// "liver", and predicts: alone it segments that structure, with a box or points it joins
    /// them, as SegVol combines prompts. The name's embedding is computed once per name.
    ///
    /// # Errors
    /// [`SessionError::Invalid`] for an empty name, weights without a text tower or a name too
    /// long for it; the model's error.
    pub fn set_text(&mut self, name: Option<&str>) -> Result<Update, SessionError> {
        let name = name.map(str::trim);
        if let Some(n) = name {
            if n.is_empty() {
                return Err(SessionError::Invalid("an empty text prompt".into()));
            }
            self.model
                .embed_text(n)
                .map_err(|e| SessionError::Invalid(e.to_string()))?;
        }
        self.push_history();
        self.prompts.text = name.map(str::to_string);
        self.corr = None; // the rounds so far were corrected under the old prompt
        self.run()
    }

    /// Adds a positive (`foreground`) or negative point and predicts.
    ///
    /// # Errors
    /// A point outside the image; the model's error.
    pub fn add_point(&mut self, zyx: [usize; 3], foreground: bool) -> Result<Update, SessionError> {
        self.check(zyx, "point")?;
        self.push_history();
        self.prompts.clicks.push(VoxelClick { zyx, foreground });
        self.run()
    }

    /// Queues a point without predicting (for protocols that batch); [`InteractiveSession::predict`]
    /// then runs once.
    ///
    /// # Errors
    /// A point outside the image.
    pub fn queue_point(&mut self, zyx: [usize; 3], foreground: bool) -> Result<(), SessionError> {
        self.check(zyx, "point")?;
        self.push_history();
        self.prompts.clicks.push(VoxelClick { zyx, foreground });
        Ok(())
    }

    /// Queues a box without predicting.
    ///
    /// # Errors
    /// A corner outside the image or inverted.
    pub fn queue_box(&mut self, lo: [usize; 3], hi: [usize; 3]) -> Result<(), SessionError> {
        self.check_box(lo, hi)?;
        self.push_history();
        self.prompts.bbox = Some((lo, hi));
        self.corr = None;
        Ok(())
    }

    /// Predicts from the current prompts (after queued actions).
    ///
    /// # Errors
    /// The model's error.
    pub fn predict(&mut self) -> Result<Update, SessionError> {
        self.run()
    }

    /// Reverts the last action: its prompts and its mask. `None` when there is nothing to undo.
    pub fn undo(&mut self) -> Option<Update> {
        let snap = self.history.pop()?;
        let changed = snap.block.map(|(b, old)| {
            put_block(&mut self.mask, self.dims, b, &old);
            b
        });
        self.prompts = snap.prompts;
        // The corrector's state as it was before the undone action (a tensor handle, no
        // replay needed). A session re-encoded since then replays instead.
        self.corr = snap.corr;
        Some(Update {
            ran: true,
            changed,
            encode_s: 0.0,
            decode_s: 0.0,
        })
    }

    /// Clears the current object's prompts and mask (and the undo history).
    pub fn reset(&mut self) -> Option<VoxelBox> {
        let empty = vec![0u8; self.mask.len()];
        let changed = diff_box(&self.mask, &empty, self.dims);
        self.mask = empty;
        self.prompts = Prompts::default();
        self.corr = None;
        self.history.clear();
        changed
    }

    /// Commits the current object into the label map (as the next label) and starts a new one.
    /// Returns the committed label, or `None` when the current object is empty.
    pub fn next_object(&mut self) -> Option<u8> {
        if self.mask.iter().all(|&m| m == 0) || self.objects == u8::MAX - 1 {
            return None;
        }
        self.objects += 1;
        let k = self.objects;
        for (l, &m) in self.labels.iter_mut().zip(&self.mask) {
            if m > 0 {
                *l = k;
            }
        }
        self.reset();
        Some(k)
    }

    /// Makes `new` the mask and returns the box that changed; the action's history step (the
    /// top one) keeps that box's old voxels for undo.
    fn replace_mask(&mut self, new: Vec<u8>) -> Option<VoxelBox> {
        let changed = diff_box(&self.mask, &new, self.dims);
        if let (Some(b), Some(top)) = (changed, self.history.last_mut()) {
            // Queued actions share one prediction: the last of them holds the whole change.
            // A step that already holds a change (a second prediction without a new action)
            // keeps the voxels from before its first one, over both boxes.
            top.block = Some(match top.block.take() {
                None => (b, take_block(&self.mask, self.dims, b)),
                Some((old, vals)) => {
                    let u = union_box(old, b);
                    let mut m = self.mask.clone();
                    put_block(&mut m, self.dims, old, &vals);
                    (u, take_block(&m, self.dims, u))
                }
            });
        }
        self.mask = new;
        changed
    }

    fn run(&mut self) -> Result<Update, SessionError> {
        let Prompts { bbox, clicks, text } = self.prompts.clone();
        if bbox.is_none() && clicks.is_empty() && text.is_none() {
            let changed = self.replace_mask(vec![0; self.mask.len()]);
            return Ok(Update {
                ran: false,
                changed,
                encode_s: 0.0,
                decode_s: 0.0,
            });
        }
        let mut encode_s = 0.0;
        let mut pts: Vec<[usize; 3]> = clicks.iter().map(|c| c.zyx).collect();
        if let Some((lo, hi)) = bbox {
            pts.extend([lo, hi]);
        }
        let covered = self.encoded.as_ref().is_some_and(|s| {
            let z = s.zoom();
            pts.iter().all(|&p| inside(p, z.crop_lo, z.crop_hi))
        });
        if !covered {
            let t = Instant::now();
            let s = Session::new(self.model, &self.image, self.dims, &pts, &self.device)
                .map_err(|e| SessionError::Model(e.to_string()))?;
            self.encoded = Some(s);
            self.corr = None;
            encode_s = t.elapsed().as_secs_f64();
        }
        let text = match &text {
            Some(n) => Some(
                self.model
                    .embed_text(n)
                    .map_err(|e| SessionError::Invalid(e.to_string()))?,
            ),
            None => None,
        };
        let Some(session) = self.encoded.as_mut() else {
            return Err(SessionError::Model("no encoding".into()));
        };
        // The mask prompt is given the mask the user sees when a click corrects it (a box
        // starts afresh); `set_previous_mask` ignores it for a model without a mask prompt.
        let previous = (!clicks.is_empty()).then_some(self.mask.as_slice());
        let t = Instant::now();
        let corr = match self.corrector {
            Some(c) if self.use_corrector && !clicks.is_empty() => Some(
                self.corr
                    .get_or_insert_with(|| CorrectionSession::new(c, &self.device)),
            ),
            _ => None,
        };
        let new = object_mask(
            session,
            ObjectPrompts {
                bbox,
                clicks: &clicks,
                text: text.as_deref(),
                previous,
            },
            corr,
            self.options,
            ImageRef::F32(&self.image),
            self.dims,
            self.spacing,
            &mut StepLog::default(),
        )
        .map_err(|e| SessionError::Model(e.to_string()))?;
        let changed = self.replace_mask(new);
        Ok(Update {
            ran: true,
            changed,
            encode_s,
            decode_s: t.elapsed().as_secs_f64(),
        })
    }
}

/// Tight inclusive box of the voxels where `a` and `b` differ. Row by row: a row compares
/// as a slice, and only a row that differs is searched for its first and last difference.
pub fn diff_box(a: &[u8], b: &[u8], dims: [usize; 3]) -> Option<VoxelBox> {
    let nx = dims[2];
    if nx == 0 {
        return None;
    }
    segvol_core::bbox::box_of_rows(a.len().min(b.len()) / nx, dims, |r| {
        let (ra, rb) = (&a[r * nx..(r + 1) * nx], &b[r * nx..(r + 1) * nx]);
        if ra == rb {
            return None;
        }
        let first = ra.iter().zip(rb).position(|(x, y)| x != y).unwrap_or(0);
        let last = nx
            - 1
            - ra.iter()
                .rev()
                .zip(rb.iter().rev())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
        Some((first, last))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_box_is_the_tight_box_of_changes() {
        let dims = [2, 3, 4];
        let a = vec![0u8; 24];
        let mut b = a.clone();
        assert_eq!(diff_box(&a, &b, dims), None);
        b[4 + 1] = 1; // (0, 1, 1)
        b[12 + 8 + 3] = 1; // (1, 2, 3)
        assert_eq!(diff_box(&a, &b, dims), Some(([0, 1, 1], [1, 2, 3])));
    }

    /// The row-wise search against the voxel-by-voxel definition, on random sparse changes.
    #[test]
    fn diff_box_matches_a_naive_scan() {
        let dims = [5, 6, 7];
        let n = 5 * 6 * 7;
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for trial in 0..200 {
            let a: Vec<u8> = (0..n).map(|_| (next() % 2) as u8).collect();
            let mut b = a.clone();
            for _ in 0..trial % 6 {
                let i = next() % n;
                b[i] ^= 1;
            }
            let mut want: Option<VoxelBox> = None;
            for i in 0..n {
                if a[i] != b[i] {
                    let p = [i / 42, (i / 7) % 6, i % 7];
                    let (lo, hi) = want.get_or_insert((p, p));
                    for k in 0..3 {
                        lo[k] = lo[k].min(p[k]);
                        hi[k] = hi[k].max(p[k]);
                    }
                }
            }
            assert_eq!(diff_box(&a, &b, dims), want, "trial {trial}");
        }
    }

    #[test]
    fn a_block_taken_and_put_back_restores_the_mask() {
        let dims = [3, 4, 5];
        let m: Vec<u8> = (0..60).map(|i| i as u8).collect();
        let b = ([1, 1, 2], [2, 3, 4]);
        let block = take_block(&m, dims, b);
        assert_eq!(block.len(), 2 * 3 * 3);
        assert_eq!(block[0], 20 + 5 + 2);
        let mut z = vec![0u8; 60];
        put_block(&mut z, dims, b, &block);
        for (i, (&got, &orig)) in z.iter().zip(&m).enumerate() {
            let p = [i / 20, (i / 5) % 4, i % 5];
            let inside = (0..3).all(|k| p[k] >= b.0[k] && p[k] <= b.1[k]);
            assert_eq!(got, if inside { orig } else { 0 }, "voxel {p:?}");
        }
    }
}
