//! The zoom-in's windows kept between passes of one session ([`crate::zoom`] runs them,
//! [`crate::pipeline::Session`] owns them): each window's encoding, and its last decode with
//! the prompts that made it.

use burn::tensor::{Tensor, backend::Backend};

use crate::prompt_encoder::Prompts;

/// What a window's image is made of, all of it: the window's corner in crop coordinates
/// (negative where the ROI's padding reaches past the crop) and the part of the ROI inside it
/// (the rest of the window is the zero padding). Two windows with the same key hold the same
/// voxels, so one encoding serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowKey {
    pub(crate) lo: [isize; 3],
    pub(crate) roi_lo: [isize; 3],
    pub(crate) roi_hi: [isize; 3],
}

impl WindowKey {
    /// The key of the window at `lo` (crop coordinates) of a pass whose ROI is `[rlo, rhi)`.
    pub(crate) fn new(lo: [isize; 3], grid: [usize; 3], rlo: [usize; 3], rhi: [usize; 3]) -> Self {
        WindowKey {
            lo,
            roi_lo: [0, 1, 2].map(|a| lo[a].max(rlo[a] as isize)),
            roi_hi: [0, 1, 2].map(|a| (lo[a] + grid[a] as isize).min(rhi[a] as isize)),
        }
    }
}

/// One window of a session's zoom-in passes: its encoding, and its last decode with the
/// prompts that made it.
#[derive(Debug)]
struct Window<B: Backend> {
    key: WindowKey,
    embedding: Tensor<B, 5>,
    last: Option<(Prompts, Vec<f32>)>,
}

impl<B: Backend> Window<B> {
    /// Floats held, for the budget.
    fn size(&self) -> usize {
        let last = self.last.as_ref().map_or(0, |(p, out)| {
            out.len() + p.mask.as_ref().map_or(0, Vec::len) + p.image.as_ref().map_or(0, Vec::len)
        });
        self.embedding.shape().num_elements() + last
    }
}

/// The windows of a session's zoom-in passes, most recently used last. A click re-runs the
/// zoom-in over the same image, usually over the same ROI: each window is encoded once (most
/// of a zoom-in's time), and decoded again only when its prompts changed (its box from the
/// global prediction, its clicks, its part of the previous mask, the text): a window far from
/// the click, whose prompts are the last pass's, gives the last pass's logits. Both are exact
/// (the encoder reads the window's voxels alone, the decoder its encoding and prompts alone).
/// Bounded by [`WindowCache::BUDGET`] floats (the oldest go first).
#[derive(Debug)]
pub(crate) struct WindowCache<B: Backend> {
    windows: Vec<Window<B>>,
}

impl<B: Backend> Default for WindowCache<B> {
    fn default() -> Self {
        WindowCache {
            windows: Vec::new(),
        }
    }
}

impl<B: Backend> WindowCache<B> {
    /// At most this many floats are kept (512 MB: 30 windows of SegVol-base with their last
    /// decodes, ≈ 250 of the shipped model).
    const BUDGET: usize = 128 << 20;

    /// The window for `key`, made most recent; its encoding made by `encode` when it is not
    /// kept (then `true`).
    pub(crate) fn window(
        &mut self,
        key: WindowKey,
        encode: impl FnOnce() -> Tensor<B, 5>,
    ) -> (usize, bool) {
        if let Some(i) = self.windows.iter().position(|w| w.key == key) {
            let w = self.windows.remove(i);
            self.windows.push(w);
            return (self.windows.len() - 1, false);
        }
        self.trim();
        self.windows.push(Window {
            key,
            embedding: encode(),
            last: None,
        });
        (self.windows.len() - 1, true)
    }

    /// Logits of window `i` for `prompts`: the last decode when its prompts were these, else
    /// `decode(encoding, prompts)` (then `true`).
    pub(crate) fn logits(
        &mut self,
        i: usize,
        prompts: Prompts,
        decode: impl FnOnce(Tensor<B, 5>, &Prompts) -> Vec<f32>,
    ) -> (&[f32], bool) {
        let w = &mut self.windows[i];
        let same = w.last.as_ref().is_some_and(|(p, _)| *p == prompts);
        if !same {
            let out = decode(w.embedding.clone(), &prompts);
            w.last = Some((prompts, out));
        }
        (
            w.last.as_ref().map_or(&[], |(_, out)| out.as_slice()),
            !same,
        )
    }

    /// Drops the oldest windows while the rest exceed the budget.
    fn trim(&mut self) {
        let mut total: usize = self.windows.iter().map(Window::size).sum();
        while total > Self::BUDGET && !self.windows.is_empty() {
            total -= self.windows.remove(0).size();
        }
    }
}
