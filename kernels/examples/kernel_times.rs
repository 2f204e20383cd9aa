//! Times each kernel at one ViT-B block's sizes (2048 tokens, 768 wide, 12 heads, MLP 3072):
//! `cargo run --release -p segvol-kernels --example kernel_times`.

use std::time::Instant;

use segvol_kernels::{
    AttentionPlan, AttentionWeights, Heads, MatRef, attention, attention_backward,
    attention_backward_with_probs, attention_layer, attention_with_probs, gelu_in_place,
    layer_norm, linear,
};

fn time(label: &str, iters: usize, mut f: impl FnMut()) {
    f();
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    println!(
        "| {label} | {:.1} |",
        t.elapsed().as_secs_f64() * 1e3 / iters as f64
    );
}

fn main() -> Result<(), segvol_kernels::KernelError> {
    let (n, c, m, heads) = (2048usize, 768usize, 3072usize, 12usize);
    let v = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect()
    };
    let x = v(n * c);
    let (g, b) = (v(c), v(c));
    let wqkv = v(c * 3 * c);
    let w1 = v(c * m);
    let w2 = v(m * c);
    let h = v(n * m);
    let qkv = v(n * 3 * c);
    println!("| kernel | ms |\n|---|---|");
    let mut tr = vec![0.0f32; n * c];
    time("transpose 768×2048 → 2048×768 (copy_into)", 5, || {
        if let Ok(m) = MatRef::new(&x, 0, [n, c], [1, n]) {
            drop(segvol_kernels::copy_into(m, &mut tr));
        }
    });
    time("layer norm", 5, || drop(layer_norm(&x, c, &g, &b, 1e-5)));
    time("qkv linear", 5, || {
        drop(linear(
            MatRef::row_major(&x, n, c).unwrap_or_else(|_| unreachable!()),
            MatRef::row_major(&wqkv, c, 3 * c).unwrap_or_else(|_| unreachable!()),
            None,
            None,
            false,
        ))
    });
    time("mlp linear1 + bias + gelu", 5, || {
        drop(linear(
            MatRef::row_major(&x, n, c).unwrap_or_else(|_| unreachable!()),
            MatRef::row_major(&w1, c, m).unwrap_or_else(|_| unreachable!()),
            Some(&v(m)),
            None,
            true,
        ))
    });
    time("mlp linear2 + bias + residual", 5, || {
        drop(linear(
            MatRef::row_major(&h, n, m).unwrap_or_else(|_| unreachable!()),
            MatRef::row_major(&w2, m, c).unwrap_or_else(|_| unreachable!()),
            Some(&b),
            Some(&x),
            false,
        ))
    });
    let mut hh = h.clone();
    time("gelu alone", 5, || gelu_in_place(&mut hh));
    let hd = |offset| Heads {
        data: &qkv,
        rows: n,
        row_stride: 3 * c,
        offset,
        heads,
        dim: c / heads,
    };
    time("attention (12 heads)", 5, || {
        drop(attention(hd(0), hd(c), hd(2 * c), 0.125))
    });
    // Training's attention at the `small` model's sizes (512 tokens, 192 wide, 6 heads), on one
    // thread as a training lane runs it: forward and backward, P recomputed or kept.
    let (ns, cs, hs) = (512usize, 192usize, 6usize);
    let qkv_s = v(ns * 3 * cs);
    let d_out = v(ns * cs);
    let hs_ = |offset| Heads {
        data: &qkv_s,
        rows: ns,
        row_stride: 3 * cs,
        offset,
        heads: hs,
        dim: cs / hs,
    };
    let scale = (cs as f32 / hs as f32).powf(-0.5);
    if let Ok(one) = rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        one.install(|| {
            time("small: attention forward (1 thread)", 50, || {
                drop(attention(hs_(0), hs_(cs), hs_(2 * cs), scale))
            });
            time("small: attention forward, P kept (1 thread)", 50, || {
                drop(attention_with_probs(hs_(0), hs_(cs), hs_(2 * cs), scale))
            });
            time(
                "small: attention backward, P recomputed (1 thread)",
                50,
                || {
                    drop(attention_backward(
                        hs_(0),
                        hs_(cs),
                        hs_(2 * cs),
                        &d_out,
                        scale,
                    ))
                },
            );
            if let Ok((_, p)) = attention_with_probs(hs_(0), hs_(cs), hs_(2 * cs), scale) {
                time("small: attention backward, P kept (1 thread)", 50, || {
                    drop(attention_backward_with_probs(
                        hs_(0),
                        hs_(cs),
                        hs_(2 * cs),
                        &p,
                        &d_out,
                        scale,
                    ))
                });
            }
        });
    }
    let x1 = v(768 * 8 * 16 * 16);
    let w1c = v(768 * 192 * 8);
    let b1 = v(192);
    time("ConvTranspose3d 768→192 on 8×16×16", 5, || {
        drop(segvol_kernels::conv_transpose_k2s2(
            &x1,
            [768, 8, 16, 16],
            &w1c,
            &b1,
            false,
        ))
    });
    let x2 = v(192 * 16 * 32 * 32);
    let w2c = v(192 * 96 * 8);
    let b2 = v(96);
    time("ConvTranspose3d 192→96 on 16×32×32 + GELU", 5, || {
        drop(segvol_kernels::conv_transpose_k2s2(
            &x2,
            [192, 16, 32, 32],
            &w2c,
            &b2,
            true,
        ))
    });
    let head = v(96);
    time("  the same, then · head (the mask logits)", 5, || {
        let e = segvol_kernels::conv_transpose_k2s2(&x2, [192, 16, 32, 32], &w2c, &b2, true)
            .unwrap_or_default();
        let n = e.len() / 96;
        let mut m = vec![0.0f32; n];
        for (c, row) in e.chunks_exact(n.max(1)).enumerate() {
            for (o, &x) in m.iter_mut().zip(row) {
                *o += head[c] * x;
            }
        }
        drop(m)
    });
    time("  fused: conv_transpose_k2s2_gelu_dot", 5, || {
        drop(segvol_kernels::conv_transpose_k2s2_gelu_dot(
            &x2,
            [192, 16, 32, 32],
            &w2c,
            &b2,
            &head,
        ))
    });
    // The whole upscaling (SegVol-base): the three steps one after the other, from the
    // channel-major input, against `upscale_dot` from the token-major one.
    let ln_w = v(192 * 16 * 32 * 32);
    let ln_b = v(192 * 16 * 32 * 32);
    time(
        "upscaling in three steps (conv1, LayerNorm + GELU, conv2 · head)",
        5,
        || {
            let y = segvol_kernels::conv_transpose_k2s2(&x1, [768, 8, 16, 16], &w1c, &b1, false)
                .unwrap_or_default();
            let a =
                segvol_kernels::full_layer_norm(&y, &ln_w, &ln_b, 1e-5, true).unwrap_or_default();
            drop(segvol_kernels::conv_transpose_k2s2_gelu_dot(
                &a,
                [192, 16, 32, 32],
                &w2c,
                &b2,
                &head,
            ))
        },
    );
    let weights = segvol_kernels::Upscaling {
        conv1: (&w1c, &b1),
        norm: (&ln_w, &ln_b),
        eps: 1e-5,
        conv2: (&w2c, &b2),
    };
    time("  fused: upscale_dot", 5, || {
        drop(segvol_kernels::upscale_dot(
            &x1,
            [8, 16, 16],
            weights,
            &head,
            &mut || {},
        ))
    });
    // The same from the per-image term and two layers' low-rank updates (8 heads × 9 tokens).
    let gam = v(768);
    let image = segvol_kernels::conv1_image_term(&x1, 768, &w1c, &[&gam, &gam])?;
    time("  per image: conv1_image_term", 5, || {
        drop(segvol_kernels::conv1_image_term(
            &x1,
            768,
            &w1c,
            &[&gam, &gam],
        ))
    });
    let factors = segvol_kernels::AttentionFactors {
        probs: v(2048 * 72),
        values: v(72 * 768),
    };
    let stats = segvol_kernels::RowStats {
        mean: v(2048),
        inv_std: v(2048),
    };
    let upd = segvol_kernels::NormedUpdate {
        factors: &factors,
        out_bias: Some(&gam),
        stats: &stats,
        gamma: &gam,
        beta: &gam,
    };
    time("  per click: conv1_from_updates", 10, || {
        drop(segvol_kernels::conv1_from_updates(
            &image,
            &w1c,
            &[upd, upd],
        ))
    });
    time(
        "  per click: conv1_from_updates + upscale_dot_from_conv1",
        5,
        || {
            if let Ok(y) = segvol_kernels::conv1_from_updates(&image, &w1c, &[upd, upd]) {
                drop(segvol_kernels::upscale_dot_from_conv1(
                    y,
                    [8, 16, 16],
                    weights,
                    &head,
                    &mut || {},
                ))
            }
        },
    );
    // The mask decoder's cross-attention layers (SegVol-base: width 768, inner 384 in 8 heads)
    // with 9 prompt tokens (5 output tokens, a box, two clicks) against the 2048 image tokens,
    // in each plan of `attention_layer`.
    let t = 9;
    let toks = v(t * c);
    let (wq, wk, wv, wo) = (v(c * 384), v(c * 384), v(c * 384), v(384 * c));
    let (bi, bo) = (v(384), v(c));
    fn mr(data: &[f32], r: usize, k: usize) -> MatRef<'_> {
        MatRef::row_major(data, r, k).unwrap_or_else(|_| unreachable!())
    }
    let w = AttentionWeights {
        q: (mr(&wq, c, 384), Some(&bi)),
        k: (mr(&wk, c, 384), Some(&bi)),
        v: (mr(&wv, c, 384), Some(&bi)),
        out: (mr(&wo, 384, c), Some(&bo)),
        heads: 8,
    };
    for plan in [AttentionPlan::Direct, AttentionPlan::FewQueries] {
        time(
            &format!("decoder token → image attention layer, {plan:?}"),
            10,
            || {
                drop(attention_layer(
                    mr(&toks, t, c),
                    mr(&x, n, c),
                    mr(&x, n, c),
                    &w,
                    plan,
                ))
            },
        );
    }
    for plan in [AttentionPlan::Direct, AttentionPlan::FewKeys] {
        time(
            &format!("decoder image → token attention layer, {plan:?}"),
            10,
            || {
                drop(attention_layer(
                    mr(&x, n, c),
                    mr(&toks, t, c),
                    mr(&toks, t, c),
                    &w,
                    plan,
                ))
            },
        );
    }
    Ok(())
}
