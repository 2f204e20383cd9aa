//! The decoder's first upscaling product split into its per-image and per-click parts
//! (`conv1_image_term`, `conv1_from_updates`) against the two-way layers' token updates as
//! written, in f64; and the split chain (factored attention, LayerNorm with its statistics,
//! `upscale_dot_from_conv1`) against `upscale_dot` on the transformer's output tokens.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, rand_vec};
use segvol_kernels::{
    AttentionFactors, AttentionWeights, MatRef, NormedUpdate, RowStats, Upscaling,
    attention_layer_residual_factored, conv1_from_updates, conv1_image_term, layer_norm_with_stats,
    upscale_dot, upscale_dot_from_conv1,
};

/// Random values in `[lo, hi)`.
fn uniform(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    rand_vec(n, seed)
        .iter()
        .map(|v| lo + (v + 1.0) / 2.0 * (hi - lo))
        .collect()
}

/// One layer's random update: factors, output bias, LayerNorm weight and bias.
struct Layer {
    factors: AttentionFactors,
    out_bias: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

#[test]
fn conv1_low_rank_matches_the_layers_as_written() {
    let (n, cin, c1, eps) = (30usize, 6usize, 3usize, 1e-5f64);
    let r = c1 * 8;
    // Offset tokens, so that their means matter.
    let x = uniform(n * cin, 1, 0.7, 2.9);
    let w1 = uniform(cin * r, 2, -1.0, 1.0);
    let widths = [5usize, 7];
    let layers: Vec<Layer> = widths
        .iter()
        .enumerate()
        .map(|(l, &m)| {
            let s = 10 * l as u64;
            Layer {
                factors: AttentionFactors {
                    probs: uniform(n * m, s + 3, 0.0, 1.0),
                    values: uniform(m * cin, s + 4, -2.0, 2.0),
                },
                out_bias: uniform(cin, s + 5, -0.5, 0.5),
                gamma: uniform(cin, s + 6, 0.5, 1.5),
                beta: uniform(cin, s + 7, -0.5, 0.5),
            }
        })
        .collect();

    // The layers as written, in f64: keys ← LN(keys + P·V + b_o); their statistics kept.
    let mut keys: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut stats = Vec::new();
    for (layer, &m) in layers.iter().zip(&widths) {
        let (mut mean, mut inv_std) = (vec![0.0f32; n], vec![0.0f32; n]);
        for i in 0..n {
            let row: Vec<f64> = (0..cin)
                .map(|c| {
                    keys[i * cin + c]
                        + layer.out_bias[c] as f64
                        + (0..m)
                            .map(|j| {
                                layer.factors.probs[i * m + j] as f64
                                    * layer.factors.values[j * cin + c] as f64
                            })
                            .sum::<f64>()
                })
                .collect();
            let mu = row.iter().sum::<f64>() / cin as f64;
            let var = row.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / cin as f64;
            let rho = 1.0 / (var + eps).sqrt();
            for c in 0..cin {
                keys[i * cin + c] =
                    (row[c] - mu) * rho * layer.gamma[c] as f64 + layer.beta[c] as f64;
            }
            (mean[i], inv_std[i]) = (mu as f32, rho as f32);
        }
        stats.push(RowStats { mean, inv_std });
    }
    // The convolution's product, `[r, n]`.
    let mut want = vec![0.0f64; r * n];
    for o in 0..r {
        for i in 0..n {
            want[o * n + i] = (0..cin)
                .map(|c| keys[i * cin + c] * w1[c * r + o] as f64)
                .sum();
        }
    }

    let gammas: Vec<&[f32]> = layers.iter().map(|l| l.gamma.as_slice()).collect();
    let image = conv1_image_term(&x, cin, &w1, &gammas).unwrap();
    let updates: Vec<NormedUpdate<'_>> = layers
        .iter()
        .zip(&stats)
        .map(|(l, s)| NormedUpdate {
            factors: &l.factors,
            out_bias: Some(&l.out_bias),
            stats: s,
            gamma: &l.gamma,
            beta: &l.beta,
        })
        .collect();
    let got = conv1_from_updates(&image, &w1, &updates).unwrap();
    assert_close(&got, &want, 2e-5, "conv1 from the updates");

    // Inconsistent sizes are errors, not panics.
    let mut short = updates.clone();
    short[1].gamma = &layers[1].gamma[1..];
    assert!(conv1_from_updates(&image, &w1, &short).is_err());
    assert!(conv1_from_updates(&image, &w1[1..], &updates).is_err());
    assert!(conv1_image_term(&x[1..], cin, &w1, &gammas).is_err());
    assert!(conv1_image_term(&x, cin, &w1, &[&layers[0].gamma[1..]]).is_err());
}

/// The split path as the decoder runs it, from the kernels' own outputs, against
/// `upscale_dot` on the tokens the layers produced.
#[test]
fn split_upscaling_matches_upscale_dot_on_the_layers_output() {
    let (d, h, w) = (2usize, 3usize, 4usize);
    let n = d * h * w;
    let (c, inner, heads, t) = (8usize, 4usize, 2usize, 3usize);
    let (c1, c2, eps) = (3usize, 2usize, 1e-5f32);
    let x = uniform(n * c, 20, -0.5, 1.5);
    let w1 = uniform(c * c1 * 8, 21, -1.0, 1.0);
    let b1 = uniform(c1, 22, -0.5, 0.5);
    let m = c1 * 8 * n;
    let norm = (uniform(m, 23, 0.5, 1.5), uniform(m, 24, -0.5, 0.5));
    let w2 = uniform(c1 * c2 * 8, 25, -1.0, 1.0);
    let b2 = uniform(c2, 26, -0.5, 0.5);
    let head = uniform(c2, 27, -1.0, 1.0);
    let weights = Upscaling {
        conv1: (&w1, &b1),
        norm: (&norm.0, &norm.1),
        eps,
        conv2: (&w2, &b2),
    };
    let mut keys = x.clone();
    let mut kept = Vec::new();
    for l in 0..2u64 {
        let s = 30 + 10 * l;
        let tokens = uniform(t * c, s, -1.0, 1.0);
        let proj: Vec<Vec<f32>> = (0..4)
            .map(|p| uniform(c * inner, s + 1 + p, -0.5, 0.5))
            .collect();
        let biases: Vec<Vec<f32>> = (0..3)
            .map(|p| uniform(inner, s + 5 + p, -0.2, 0.2))
            .collect();
        let out_bias = uniform(c, s + 8, -0.2, 0.2);
        let aw = AttentionWeights {
            q: (
                MatRef::row_major(&proj[0], c, inner).unwrap(),
                Some(&biases[0]),
            ),
            k: (
                MatRef::row_major(&proj[1], c, inner).unwrap(),
                Some(&biases[1]),
            ),
            v: (
                MatRef::row_major(&proj[2], c, inner).unwrap(),
                Some(&biases[2]),
            ),
            out: (
                MatRef::row_major(&proj[3], inner, c).unwrap(),
                Some(&out_bias),
            ),
            heads,
        };
        let (summed, factors) = attention_layer_residual_factored(
            MatRef::row_major(&keys, n, c).unwrap(),
            MatRef::row_major(&tokens, t, c).unwrap(),
            MatRef::row_major(&tokens, t, c).unwrap(),
            &aw,
            Some(&keys),
        )
        .unwrap();
        let (gamma, beta) = (uniform(c, s + 9, 0.5, 1.5), uniform(c, s + 10, -0.3, 0.3));
        let (next, stats) = layer_norm_with_stats(&summed, c, &gamma, &beta, 1e-5).unwrap();
        keys = next;
        kept.push((factors, out_bias, stats, gamma, beta));
    }
    let want = upscale_dot(&keys, [d, h, w], weights, &head, &mut || {}).unwrap();
    let gammas: Vec<&[f32]> = kept.iter().map(|k| k.3.as_slice()).collect();
    let image = conv1_image_term(&x, c, &w1, &gammas).unwrap();
    let updates: Vec<NormedUpdate<'_>> = kept
        .iter()
        .map(|(f, bo, s, g, b)| NormedUpdate {
            factors: f,
            out_bias: Some(bo),
            stats: s,
            gamma: g,
            beta: b,
        })
        .collect();
    let y = conv1_from_updates(&image, &w1, &updates).unwrap();
    let mut stages = 0;
    let got = upscale_dot_from_conv1(y, [d, h, w], weights, &head, &mut || stages += 1).unwrap();
    assert_eq!(stages, 2, "bias and LayerNorm reported");
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    assert_close(&got, &want, 2e-5, "split upscaling");
    assert!(upscale_dot_from_conv1(vec![0.0; 5], [d, h, w], weights, &head, &mut || {}).is_err());
}
