use super::*;
use proptest::prelude::*;

/// The obviously-correct twin: score every voxel, filter, full sort, take K.
fn naive(dims: [usize; 3], map: &[f32], clicks: &[Click], cfg: &SamplerConfig) -> InteractionState {
    let prob = |v: f32| match cfg.map {
        MapKind::Probabilities => v,
        MapKind::Logits => 1.0 / (1.0 + (-v).exp()),
    };
    let mut u: Vec<(f32, usize)> = map
        .iter()
        .enumerate()
        .map(|(i, &v)| (prob(v), i))
        .filter(|&(p, _)| p > cfg.tau && p < 1.0 - cfg.tau)
        .map(|(p, i)| ((p - 0.5).abs(), i))
        .collect();
    let u_cand = u.len();
    u.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    u.truncate(cfg.k);
    let s = cfg.spacing.unwrap_or([1.0; 3]);
    let mut e: Vec<(f64, usize, f32)> = Vec::new();
    for (i, &v) in map.iter().enumerate() {
        let zyx = unravel(i, dims);
        let mut best: Option<(f64, usize)> = None;
        for (n, c) in clicks.iter().enumerate() {
            let d = (0..3)
                .map(|ax| ((zyx[ax] as f64 - c.zyx[ax] as f64) * s[ax]).powi(2))
                .sum::<f64>()
                .sqrt();
            if d <= cfg.radius && (prob(v) > 0.5) != c.foreground && best.is_none_or(|b| d < b.0) {
                best = Some((d, n));
            }
        }
        if let Some((d, n)) = best {
            e.push((d, i, if clicks[n].foreground { 1.0 } else { 0.0 }));
        }
    }
    let e_cand = e.len();
    e.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    e.truncate(cfg.k);
    let u_rows: Vec<(f64, usize, f32)> =
        u.iter().map(|&(key, i)| (f64::from(key), i, key)).collect();
    InteractionState {
        dims,
        k: cfg.k,
        uncertainty: SampledSet::from_rows(cfg.k, &u_rows, dims, u_cand),
        error: SampledSet::from_rows(cfg.k, &e, dims, e_cand),
        first_click: clicks.first().map(|c| c.zyx),
    }
}

fn arb_case() -> impl Strategy<Value = ([usize; 3], Vec<f32>, Vec<Click>, SamplerConfig)> {
    (1usize..6, 1usize..7, 1usize..8).prop_flat_map(|(d, h, w)| {
        let n = d * h * w;
        (
            Just([d, h, w]),
            // Quantised probabilities: many exact ties exercise the raster tie-break.
            prop::collection::vec((0u8..=20).prop_map(|q| f32::from(q) / 20.0), n),
            prop::collection::vec(((0..d), (0..h), (0..w), any::<bool>()), 0..4),
            1usize..12,
            prop_oneof![Just(0.1f32), Just(0.25), Just(0.45)],
            prop_oneof![Just(1.0f64), Just(1.5), Just(2.0), Just(8.0)],
            prop_oneof![Just(None), Just(Some([3.0, 1.0, 0.5]))],
        )
            .prop_map(move |(dims, map, clicks, k, tau, radius, spacing)| {
                let clicks = clicks
                    .into_iter()
                    .map(|(z, y, x, fg)| Click {
                        zyx: [z, y, x],
                        foreground: fg,
                    })
                    .collect();
                let cfg = SamplerConfig {
                    k,
                    tau,
                    radius,
                    spacing,
                    map: MapKind::Probabilities,
                    threads: 1,
                };
                (dims, map, clicks, cfg)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn matches_the_naive_reference((dims, map, clicks, cfg) in arb_case()) {
        let fast = sample(dims, &map, &clicks, &cfg).unwrap();
        prop_assert_eq!(fast, naive(dims, &map, &clicks, &cfg));
    }

    #[test]
    fn logits_mode_matches_the_naive_reference(
        (dims, map, clicks, mut cfg) in arb_case(),
        scale in prop_oneof![Just(1.0f32), Just(7.3)],
    ) {
        // Logits in [-scale, scale] with ties.
        let logits: Vec<f32> = map.iter().map(|p| (p - 0.5) * 2.0 * scale).collect();
        cfg.map = MapKind::Logits;
        let fast = sample(dims, &logits, &clicks, &cfg).unwrap();
        prop_assert_eq!(fast, naive(dims, &logits, &clicks, &cfg));
    }

    #[test]
    fn padding_rows_are_zero_and_counts_add_up((dims, map, clicks, cfg) in arb_case()) {
        let s = sample(dims, &map, &clicks, &cfg).unwrap();
        let rows = s.features();
        prop_assert_eq!(rows.len(), 2 * cfg.k);
        for (i, row) in rows.iter().enumerate() {
            let (set, j) = if i < cfg.k { (&s.uncertainty, i) } else { (&s.error, i - cfg.k) };
            if set.is_valid(j) {
                prop_assert_eq!(row[4], 1.0);
                prop_assert!(row[..3].iter().all(|c| (0.0..=1.0).contains(c)));
            } else {
                prop_assert_eq!(*row, [0.0; FEATURES]);
            }
        }
        prop_assert_eq!(s.uncertainty.n_valid, s.uncertainty.n_candidates.min(cfg.k));
        prop_assert_eq!(s.error.n_valid, s.error.n_candidates.min(cfg.k));
    }
}

#[test]
fn hand_built_padding_and_ties() {
    // 1×2×3 map, raster order: [0.3, 0.7, 0.5, 0.9, 0.3, 0.05]
    // |p−0.5| = [0.2, 0.2, 0.0, -, 0.2, -]; ranked: idx 2 (0.0), then 0, 1, 4 (ties by index).
    let map = [0.3, 0.7, 0.5, 0.9, 0.3, 0.05];
    let cfg = SamplerConfig {
        k: 3,
        ..Default::default()
    };
    let s = sample([1, 2, 3], &map, &[], &cfg).unwrap();
    assert_eq!(s.uncertainty.coords, vec![[0, 0, 2], [0, 0, 0], [0, 0, 1]]);
    assert_eq!(s.uncertainty.n_candidates, 4);
    assert_eq!(
        s.uncertainty.values,
        vec![0.0, (0.3f32 - 0.5).abs(), (0.7f32 - 0.5).abs()]
    );
    // No clicks: the error set is all padding and the context is zero.
    assert_eq!(s.error.n_valid, 0);
    assert!(s.features()[3..].iter().all(|r| *r == [0.0; 8]));
    // K larger than the candidates pads.
    let s = sample([1, 2, 3], &map, &[], &SamplerConfig { k: 6, ..cfg }).unwrap();
    assert_eq!(s.uncertainty.n_valid, 4);
    assert_eq!(&s.uncertainty.coords[4..], &[[0, 0, 0], [0, 0, 0]]);
}

#[test]
fn error_set_on_the_border_with_anisotropic_spacing() {
    // 3×3×3, all background (p = 0). A fg click at the corner (0,0,0), radius 3 mm with
    // spacing z = 3 mm, y = x = 1 mm: z may move at most 1 slice, y/x up to 2 voxels
    // (and only inside the volume), with dz²·9 + dy² + dx² ≤ 9.
    let map = vec![0.0f32; 27];
    let cfg = SamplerConfig {
        k: 100,
        radius: 3.0,
        spacing: Some([3.0, 1.0, 1.0]),
        ..Default::default()
    };
    let s = sample([3, 3, 3], &map, &[Click::fg([0, 0, 0])], &cfg).unwrap();
    let mut want = Vec::new();
    for z in 0..3usize {
        for y in 0..3usize {
            for x in 0..3usize {
                let d2 = 9 * z * z + y * y + x * x;
                if d2 <= 9 {
                    want.push(((d2 as f64).sqrt(), (z * 3 + y) * 3 + x));
                }
            }
        }
    }
    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let got: Vec<usize> = s.error.coords[..s.error.n_valid]
        .iter()
        .map(|c| (c[0] * 3 + c[1]) * 3 + c[2])
        .collect();
    assert_eq!(got, want.iter().map(|w| w.1).collect::<Vec<_>>());
    // (0,0,0) first with distance 0; (1,0,0) is exactly 3 mm away and included.
    assert_eq!(s.error.coords[0], [0, 0, 0]);
    assert!(s.error.coords[..s.error.n_valid].contains(&[1, 0, 0]));
    assert!(!s.error.coords[..s.error.n_valid].contains(&[1, 1, 0]));
    assert!(s.error.values[..s.error.n_valid].iter().all(|&v| v == 1.0));
}

#[test]
fn nearest_qualifying_click_labels_the_row() {
    // 1×1×5, p = [0.9, 0.9, 0.1, 0.1, 0.1]. fg click at x=4 (disagrees where p ≤ 0.5:
    // x = 2, 3, 4), bg click at x=0 (disagrees where p > 0.5: x = 0, 1). Radius 4.
    let map = [0.9, 0.9, 0.1, 0.1, 0.1];
    let cfg = SamplerConfig {
        k: 10,
        radius: 4.0,
        ..Default::default()
    };
    let s = sample(
        [1, 1, 5],
        &map,
        &[Click::fg([0, 0, 4]), Click::bg([0, 0, 0])],
        &cfg,
    )
    .unwrap();
    // Distances: x4:0 (fg), x0:0 (bg), x3:1 (fg), x1:1 (bg), x2:2 (fg).
    let xs: Vec<usize> = s.error.coords[..5].iter().map(|c| c[2]).collect();
    assert_eq!(xs, vec![0, 4, 1, 3, 2]);
    assert_eq!(&s.error.values[..5], &[0.0, 1.0, 0.0, 1.0, 1.0]);
    // The context is the first click, normalised: x = 4/4 = 1.
    assert_eq!(s.features()[10][5..], [0.0, 0.0, 1.0]);
}

#[test]
fn layouts_for_the_gru() {
    let map = [0.45f32, 0.2, 0.8, 0.5];
    let cfg = SamplerConfig {
        k: 2,
        ..Default::default()
    };
    let s = sample([1, 2, 2], &map, &[Click::bg([0, 1, 1])], &cfg).unwrap();
    // Uncertainty: idx 3 (0.0), idx 0 (0.05). Error: the bg click at (0,1,1) disagrees only
    // with idx 2 = (0,1,0) where p = 0.8 > 0.5 (its own voxel has p = 0.5, not > 0.5).
    let x = s.gru_input();
    assert_eq!(x.len(), 2 * 2 * 8);
    // Row 0: (0,1,1) → normalised (0, 1, 1), value 0, valid 1, context (0, 1, 1).
    assert_eq!(&x[..8], &[0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
    assert_eq!(&x[8..11], &[0.0, 0.0, 0.0]);
    assert!((x[11] - 0.05).abs() < 1e-6);
    // Error row 0: (0,1,0) → (0, 1, 0), label 0 (bg), valid 1, context (0, 1, 1); row 1 padding.
    assert_eq!(&x[16..24], &[0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
    assert!(x[24..].iter().all(|&v| v == 0.0));
    let c = s.coords_normalized();
    assert_eq!(c.len(), 2 * 2 * 3);
    assert_eq!(&c[..3], &[0.0, 1.0, 1.0]);
    assert_eq!(batch_gru_input(&[s.clone(), s.clone()]).len(), 2 * 32);
    assert_eq!(batch_coords(&[s.clone(), s]).len(), 2 * 12);
}

#[test]
fn bad_input_is_a_typed_error() {
    let ok = SamplerConfig::default();
    let e = |r: Result<InteractionState, SamplerError>| r.unwrap_err();
    assert!(matches!(
        e(sample([0, 4, 4], &[], &[], &ok)),
        SamplerError::EmptyVolume
    ));
    assert!(matches!(
        e(sample([1, 2, 2], &[0.0; 3], &[], &ok)),
        SamplerError::ShapeMismatch { .. }
    ));
    assert!(matches!(
        e(sample([1, 2, 2], &[0.0; 4], &[Click::fg([0, 2, 0])], &ok)),
        SamplerError::ClickOutside { index: 0, .. }
    ));
    assert!(matches!(
        e(sample([1, 2, 2], &[0.0, f32::NAN, 0.0, 0.0], &[], &ok)),
        SamplerError::NotANumber { index: 1 }
    ));
    assert!(matches!(
        e(sample([1, 2, 2], &[0.0, 3.5, 0.0, 0.0], &[], &ok)),
        SamplerError::OutOfRange { index: 1, .. }
    ));
    for cfg in [
        SamplerConfig { k: 0, ..ok },
        SamplerConfig { tau: 0.5, ..ok },
        SamplerConfig { tau: 0.0, ..ok },
        SamplerConfig { radius: 0.0, ..ok },
        SamplerConfig {
            spacing: Some([1.0, -1.0, 1.0]),
            ..ok
        },
    ] {
        let err = e(sample([1, 2, 2], &[0.0; 4], &[], &cfg));
        assert!(matches!(err, SamplerError::InvalidConfig { .. }), "{err}");
    }
    // NaN logits too.
    let logits = SamplerConfig {
        map: MapKind::Logits,
        ..ok
    };
    assert!(matches!(
        e(sample([1, 1, 2], &[f32::NAN, 0.0], &[], &logits)),
        SamplerError::NotANumber { index: 0 }
    ));
}

/// Above the parallel threshold every thread count gives the naive reference's answer, ties
/// included (values quantised to 1/32), and the first bad voxel is reported even when it lies
/// in a later thread's part.
#[test]
fn thread_count_never_changes_the_result() {
    let dims = [64, 64, 80];
    let n: usize = dims.iter().product();
    assert!(n >= PARALLEL_MIN);
    let map: Vec<f32> = (0..n)
        .map(|i| ((i as u64 * 2_654_435_761 % (1 << 32)) >> 27) as f32 / 32.0)
        .collect();
    let clicks = [Click::fg([10, 20, 30]), Click::bg([60, 60, 70])];
    let base = SamplerConfig {
        k: 300,
        threads: 1,
        ..Default::default()
    };
    let want = naive(dims, &map, &clicks, &base);
    for threads in [1, 2, 3, 7, 0] {
        let got = sample(dims, &map, &clicks, &SamplerConfig { threads, ..base }).unwrap();
        assert_eq!(got, want, "threads = {threads}");
    }
    // Logits (the corrector's map) split the same way: quantised values, ties included.
    let logits: Vec<f32> = map.iter().map(|&p| (p * 8.0 - 4.0).round() / 2.0).collect();
    let lcfg = SamplerConfig {
        map: MapKind::Logits,
        ..base
    };
    let want = naive(dims, &logits, &clicks, &lcfg);
    assert!(
        want.uncertainty.n_candidates > 300,
        "the band holds more than K voxels"
    );
    for threads in [1, 2, 3, 7, 0] {
        let got = sample(dims, &logits, &clicks, &SamplerConfig { threads, ..lcfg }).unwrap();
        assert_eq!(got, want, "logits, threads = {threads}");
    }
    let mut bad_l = logits.clone();
    bad_l[n - 3] = f32::NAN;
    assert_eq!(
        sample(dims, &bad_l, &clicks, &SamplerConfig { threads: 3, ..lcfg }).unwrap_err(),
        SamplerError::NotANumber { index: n - 3 }
    );
    let mut bad = map.clone();
    bad[n - 5] = -0.25;
    bad[n - 3] = f32::NAN;
    for threads in [1, 3] {
        let e = sample(dims, &bad, &clicks, &SamplerConfig { threads, ..base }).unwrap_err();
        assert_eq!(
            e,
            SamplerError::OutOfRange {
                index: n - 5,
                value: -0.25
            },
            "threads = {threads}"
        );
    }
}
