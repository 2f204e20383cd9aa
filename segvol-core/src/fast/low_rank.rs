//! Between clicks on one image, on burn-flex: what the mask decoder keeps per image, and the
//! first upscaling product from it (`segvol_kernels::conv1_from_updates`).
//!
//! The decoder's image tokens enter the two-way transformer as `embedding + dense`, token-major
//! with their positional encoding beside them. For a model without dense prompts of its own
//! (SegVol's released weights: the dense prompt is the constant "no mask" embedding) these are
//! the same at every click on one image: they are kept with the values they were made from
//! ([`ImageCache`]), and a decode whose values are equal (the same buffer, or compared bit by
//! bit) reuses them. So is the first ConvTranspose3d's product with those tokens: each decode
//! computes only its low-rank change (the kernel's docs have the algebra), at SegVol-base 1.3
//! instead of 4.8 GFLOP. Every decode of such a model takes this path, the first of an image
//! too (which makes the kept part, ≈ 4.8 GFLOP once), so a decode's result does not depend on
//! which decodes came before it. Models with dense prompts (the mask prompt) keep the direct
//! product.

use std::any::Any;
use std::sync::{Arc, Mutex};

use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Tensor, backend::Backend};

/// One two-way layer's image → token attention term as factors: `probs` `[n, heads·T]`,
/// `values` `[heads·T, C]`.
#[derive(Debug, Clone)]
pub struct Factors(#[cfg(feature = "fast-cpu")] segvol_kernels::AttentionFactors);

/// A token-wise LayerNorm's statistics.
#[derive(Debug, Clone)]
pub struct Stats(#[cfg(feature = "fast-cpu")] segvol_kernels::RowStats);

/// The per-image part of the first upscaling product with the weights it was made with.
#[derive(Debug)]
struct Term<B: Backend> {
    #[cfg(feature = "fast-cpu")]
    image: segvol_kernels::Conv1ImageTerm,
    conv1: Tensor<B, 5>,
    gammas: Vec<Tensor<B, 1>>,
}

/// What one image's decodes share.
#[derive(Debug)]
struct Entry<B: Backend> {
    /// The image embedding, the dense prompt and the dense PE (`[1, C, gd, gh, gw]`): what
    /// the rest was made from.
    embedding: Tensor<B, 5>,
    dense: Tensor<B, 5>,
    pe: Tensor<B, 5>,
    /// Token-major, `[1, n, C]`: the keys, their PE, and their sum (the first layer's
    /// attention keys).
    keys: Tensor<B, 3>,
    key_pe: Tensor<B, 3>,
    keys_with_pe: Tensor<B, 3>,
    term: Option<Arc<Term<B>>>,
}

/// The mask decoder's per-image cache (one image: the last one decoded). Shared by clones of
/// the model; every use compares values, so a stale entry is never used. Type-erased (an
/// `Entry<B>` inside) because burn's `Module` derive takes any field generic over the backend
/// for a module, skipped or not.
#[derive(Clone, Default)]
pub struct ImageCache(Arc<Mutex<Option<Box<dyn Any + Send>>>>);

impl std::fmt::Debug for ImageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageCache")
    }
}

/// Whether `a` and `b` hold the same values in the same layout (burn-flex; `false`
/// elsewhere): at once when they share their buffer (a clone of the embedding, the PE cached
/// by the model), else bit by bit.
pub(crate) fn same<B: Backend, const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>) -> bool {
    #[cfg(feature = "fast-cpu")]
    {
        let (Some(x), Some(y)) = (super::imp::flex(a.clone()), super::imp::flex(b.clone())) else {
            return false;
        };
        if x.layout() != y.layout() {
            return false;
        }
        let (p, q) = (x.storage::<f32>(), y.storage::<f32>());
        // A buffer this cache holds a handle to cannot change or be freed: the same address
        // is the same values.
        (p.len() == q.len() && std::ptr::eq(p.as_ptr(), q.as_ptr()))
            || segvol_kernels::same_bits(p, q)
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (a, b);
        false
    }
}

impl ImageCache {
    /// The token-major keys (`embedding + dense`), key PE (`pe`) and their sum, from
    /// `[1, C, gd, gh, gw]` inputs: the kept ones when all three inputs hold the values of
    /// the last call, else `make()`'s (then kept). Off the fast path, `make()`'s, not kept.
    pub fn keys<B: Backend>(
        &self,
        embedding: &Tensor<B, 5>,
        dense: &Tensor<B, 5>,
        pe: &Tensor<B, 5>,
        make: impl FnOnce() -> (Tensor<B, 3>, Tensor<B, 3>),
    ) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let fresh = |(keys, key_pe): (Tensor<B, 3>, Tensor<B, 3>)| {
            let sum = keys.clone() + key_pe.clone();
            (keys, key_pe, sum)
        };
        // `SEGVOL_NO_IMAGE_CACHE=1`: nothing kept, for before/after timings.
        static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let off = *OFF.get_or_init(|| std::env::var_os("SEGVOL_NO_IMAGE_CACHE").is_some());
        if off || !super::is_active::<B>() {
            return fresh(make());
        }
        let Ok(mut slot) = self.0.lock() else {
            return fresh(make());
        };
        if let Some(e) = slot.as_mut().and_then(|e| e.downcast_mut::<Entry<B>>())
            && same(&e.embedding, embedding)
            && same(&e.dense, dense)
            && same(&e.pe, pe)
        {
            return (e.keys.clone(), e.key_pe.clone(), e.keys_with_pe.clone());
        }
        let (keys, key_pe, keys_with_pe) = fresh(make());
        *slot = Some(Box::new(Entry {
            embedding: embedding.clone(),
            dense: dense.clone(),
            pe: pe.clone(),
            keys: keys.clone(),
            key_pe: key_pe.clone(),
            keys_with_pe: keys_with_pe.clone(),
            term: None,
        }));
        (keys, key_pe, keys_with_pe)
    }

    /// The first upscaling product's per-image term for the kept tokens, with `conv1`'s
    /// weight and the LayerNorms after each two-way layer (`norms`, in order): made on the
    /// entry's first request, remade when those weights' values changed. `None`: no entry, or
    /// off the fast path.
    fn term<B: Backend>(
        &self,
        conv1: &Tensor<B, 5>,
        norms: &[&LayerNorm<B>],
    ) -> Option<Arc<Term<B>>> {
        let mut slot = self.0.lock().ok()?;
        let e = slot.as_mut()?.downcast_mut::<Entry<B>>()?;
        let gammas: Vec<Tensor<B, 1>> = norms.iter().map(|n| n.gamma.val()).collect();
        if let Some(t) = &e.term
            && same(&t.conv1, conv1)
            && t.gammas.len() == gammas.len()
            && t.gammas.iter().zip(&gammas).all(|(a, b)| same(a, b))
        {
            return Some(t.clone());
        }
        let t = Arc::new(make_term(&e.keys, conv1, gammas)?);
        e.term = Some(t.clone());
        Some(t)
    }
}

/// `segvol_kernels::conv1_image_term` on the kept tokens.
fn make_term<B: Backend>(
    keys: &Tensor<B, 3>,
    conv1: &Tensor<B, 5>,
    gammas: Vec<Tensor<B, 1>>,
) -> Option<Term<B>> {
    #[cfg(feature = "fast-cpu")]
    {
        use super::imp::{dense, flex, slice};
        let [b, _, c] = keys.dims();
        if b != 1 {
            return None;
        }
        let x = dense(flex(keys.clone())?);
        let w1 = dense(flex(conv1.clone())?);
        let gs: Vec<_> = gammas
            .iter()
            .map(|g| flex(g.clone()).map(dense))
            .collect::<Option<_>>()?;
        let gl: Vec<&[f32]> = gs.iter().map(slice).collect();
        let image = segvol_kernels::conv1_image_term(slice(&x), c, slice(&w1), &gl).ok()?;
        Some(Term {
            image,
            conv1: conv1.clone(),
            gammas,
        })
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (keys, conv1, gammas);
        None
    }
}

/// What [`image_to_token_norm`] returns: the layer's new image tokens, the same plus the
/// key PE when one was given, and the update's factors and statistics (for [`Kept`]).
pub struct NormedKeys<B: Backend> {
    /// `norm(residual + attention(q, k, v))`, `[1, n, C]`.
    pub keys: Tensor<B, 3>,
    /// `keys + pe`, the next attention's keys.
    pub keys_pe: Option<Tensor<B, 3>>,
    /// The attention term's factors.
    pub factors: Factors,
    /// The LayerNorm's statistics.
    pub stats: Stats,
}

/// A two-way layer's image-token update on the fast path, in one pass over the image tokens
/// (`segvol_kernels::image_to_token_norm`): `norm(residual + attention(q, k, v))` of its
/// image → token attention (the few-keys plan) and the LayerNorm after it, plus `pe` when
/// given. `None` → the caller's code (another backend, batch ≠ 1, shapes another plan suits
/// better).
#[allow(clippy::too_many_arguments)]
pub fn image_to_token_norm<B: Backend>(
    [wq, wk, wv, wo]: [&Linear<B>; 4],
    heads: usize,
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    residual: &Tensor<B, 3>,
    (norm, eps): (&LayerNorm<B>, f64),
    pe: Option<&Tensor<B, 3>>,
) -> Option<NormedKeys<B>> {
    #[cfg(feature = "fast-cpu")]
    {
        use super::imp::{dense, dense3, flex, slice, tensor};
        use segvol_kernels::{AttentionPlan, MatRef};
        if !super::imp::active::<B>() {
            return None;
        }
        let [b, nq, cq] = q.dims();
        let [_, nk, ck] = k.dims();
        if b != 1 || k.dims()[0] != 1 || v.dims() != [1, nk, ck] {
            return None;
        }
        let ls = super::flex_linears([wq, wk, wv, wo])?;
        let w = super::attention_weights(&ls, heads)?;
        let (inner, c_out) = (w.q.0.dims()[1], w.out.0.dims()[1]);
        if segvol_kernels::plan_attention_layer(nq, nk, cq, ck, inner, c_out, heads)
            != AttentionPlan::FewKeys
            || residual.dims() != [1, nq, c_out]
            || pe.is_some_and(|p| p.dims() != [1, nq, c_out])
        {
            return None;
        }
        let [q, k, v] = dense3([q, k, v])?;
        let r = dense(flex(residual.clone())?);
        let pe = match pe {
            Some(p) => Some(dense(flex(p.clone())?)),
            None => None,
        };
        let gamma = dense(flex(norm.gamma.val())?);
        let beta = dense(flex(norm.beta.as_ref()?.val())?);
        let out = segvol_kernels::image_to_token_norm(
            MatRef::row_major(slice(&q), nq, cq).ok()?,
            MatRef::row_major(slice(&k), nk, ck).ok()?,
            MatRef::row_major(slice(&v), nk, ck).ok()?,
            &w,
            slice(&r),
            segvol_kernels::RowNorm {
                gamma: slice(&gamma),
                beta: slice(&beta),
                eps: eps as f32,
            },
            pe.as_ref().map(slice),
        )
        .ok()?;
        let dims = [1, nq, c_out];
        let keys = super::hit(super::Kernel::AttentionLayer, tensor(out.tokens, dims))?;
        super::HITS[super::Kernel::FoldedAttention as usize]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        super::HITS[super::Kernel::LayerNorm as usize]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let keys_pe = match out.with_pe {
            Some(p) => Some(tensor(p, dims)?),
            None => None,
        };
        Some(NormedKeys {
            keys,
            keys_pe,
            factors: Factors(out.factors),
            stats: Stats(out.stats),
        })
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (wq, wk, wv, wo, heads, q, k, v, residual, norm, eps, pe);
        None
    }
}

/// One two-way layer's kept update: its image → token attention's factors and output
/// projection, its LayerNorm's statistics and weights.
pub struct Kept<'a, B: Backend> {
    /// From [`image_to_token_norm`].
    pub factors: Factors,
    /// The attention's output projection (its bias is the update's constant).
    pub out_proj: &'a Linear<B>,
    /// From [`image_to_token_norm`].
    pub stats: Stats,
    /// The LayerNorm after the update.
    pub norm: &'a LayerNorm<B>,
}

/// The decoder's whole output upscaling reduced to the mask, as [`super::upscale_dot`], with
/// its first product from the per-image term and the layers' updates `kept` (in order).
/// `None` → the caller's code: off the fast path, or the cache has no term (yet) for this
/// image and weights.
pub fn upscale_dot_low_rank<B: Backend>(
    cache: &ImageCache,
    kept: &[Kept<'_, B>],
    grid: [usize; 3],
    weights: &super::UpscaleWeights<'_, B>,
    head: &Tensor<B, 2>,
    mark: &mut dyn FnMut(&'static str),
) -> Option<Tensor<B, 5>> {
    #[cfg(feature = "fast-cpu")]
    {
        use super::imp::{dense, flex, slice};
        if !super::imp::active::<B>() || kept.is_empty() {
            return None;
        }
        let norms: Vec<&LayerNorm<B>> = kept.iter().map(|k| k.norm).collect();
        let term = cache.term(weights.conv1.0, &norms)?;
        let biases: Vec<Option<_>> = kept
            .iter()
            .map(|k| k.out_proj.bias.as_ref().map(|b| flex(b.val()).map(dense)))
            .map(|b| b.map_or(Some(None), |b| b.map(Some)))
            .collect::<Option<_>>()?;
        let gb: Vec<(_, _)> = kept
            .iter()
            .map(|k| {
                Some((
                    dense(flex(k.norm.gamma.val())?),
                    dense(flex(k.norm.beta.as_ref()?.val())?),
                ))
            })
            .collect::<Option<_>>()?;
        let updates: Vec<segvol_kernels::NormedUpdate<'_>> = kept
            .iter()
            .zip(&biases)
            .zip(&gb)
            .map(|((k, bo), (g, be))| segvol_kernels::NormedUpdate {
                factors: &k.factors.0,
                out_bias: bo.as_ref().map(slice),
                stats: &k.stats.0,
                gamma: slice(g),
                beta: slice(be),
            })
            .collect();
        let w1 = dense(flex(weights.conv1.0.clone())?);
        let y = segvol_kernels::conv1_from_updates(&term.image, slice(&w1), &updates).ok()?;
        let out = super::upscale_dot_from(super::Conv1Input::Product(y), grid, weights, head, mark);
        super::hit(super::Kernel::UpscaleLowRank, out)
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (cache, kept, grid, weights, head, mark);
        None
    }
}
