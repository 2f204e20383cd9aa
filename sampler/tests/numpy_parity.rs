//! segvol-sampler against the numpy reference (`sampler/bench/numpy_reference.py fixture`),
//! on a probability map derived from the shared `ct_kidney_right` case.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use segvol_sampler::{Click, SampledSet, SamplerConfig, sample};

/// The integer-only recipe of `fixture_map` in the numpy script: quantised to 1/64.
fn fixture_map(gts: &[u8]) -> Vec<f32> {
    gts.iter()
        .enumerate()
        .map(|(i, &g)| {
            let noise = (((i as u64) * 2_654_435_761) % (1u64 << 32)) >> 27;
            let q = (if g > 0 { 40i64 } else { 8 } + noise as i64 - 16).clamp(0, 64);
            q as f32 / 64.0
        })
        .collect()
}

fn check(got: &SampledSet, want: &serde_json::Value, what: &str) {
    let coords: Vec<[usize; 3]> = want["coords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let c = c.as_array().unwrap();
            [0, 1, 2].map(|i| c[i].as_u64().unwrap() as usize)
        })
        .collect();
    assert_eq!(
        got.n_candidates as u64,
        want["n_candidates"].as_u64().unwrap(),
        "{what}"
    );
    assert_eq!(got.n_valid, coords.len(), "{what}");
    assert_eq!(
        &got.coords[..got.n_valid],
        &coords[..],
        "{what} coordinates"
    );
    let values: Vec<f32> = want["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(&got.values[..got.n_valid], &values[..], "{what} values");
    if let Some(keys) = want.get("keys") {
        for (g, w) in got.keys.iter().zip(keys.as_array().unwrap()) {
            assert!((g - w.as_f64().unwrap()).abs() < 1e-12, "{what} key");
        }
    }
}

#[test]
fn numpy_parity_on_ct_kidney_right() {
    let shared = std::env::var_os("SEGVOL_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let case = segvol_io::ChallengeCase::read(shared.join("data/npz/ct_kidney_right.npz"))
        .expect("shared/data/npz/ct_kidney_right.npz (set SEGVOL_SHARED)");
    let gts = case.gts.unwrap();
    let probs = fixture_map(&gts.data);
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ct_kidney_right_expected.json"),
    )
    .unwrap();
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    let clicks: Vec<Click> = want["clicks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let zyx = c[0].as_array().unwrap();
            Click {
                zyx: [0, 1, 2].map(|i| zyx[i].as_u64().unwrap() as usize),
                foreground: c[1].as_bool().unwrap(),
            }
        })
        .collect();
    let s = sample(gts.dims, &probs, &clicks, &SamplerConfig::default()).unwrap();
    check(&s.uncertainty, &want["uncertainty"], "uncertainty");
    check(&s.error, &want["error"], "error");
    let cfg = SamplerConfig {
        k: 50,
        tau: 0.25,
        radius: 7.0,
        spacing: Some([3.0, 1.5, 1.5]),
        ..Default::default()
    };
    let s = sample(gts.dims, &probs, &clicks, &cfg).unwrap();
    check(
        &s.uncertainty,
        &want["aniso"]["uncertainty"],
        "aniso uncertainty",
    );
    check(&s.error, &want["aniso"]["error"], "aniso error");
}
