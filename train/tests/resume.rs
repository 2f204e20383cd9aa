//! A run stopped mid-stage and resumed from its checkpoint ends in exactly the state of the
//! run that was never stopped (same weights, bit for bit): the checkpoint holds the model, the
//! optimiser's moments and the step, and every random draw is a function of (seed, stage,
//! step).

use std::path::PathBuf;

use burn::backend::Autodiff;
use burn_store::ModuleSnapshot;
use segvol_backends::Flex;
use segvol_core::{SegVol, SegVolConfig};
use segvol_train::data::Split;
use segvol_train::{Progress, Run, Stage, TrainConfig, TrainError, train_stages};

/// Model initialisation draws from the backend's one global generator (`B::seed` at the start
/// of a run), so two runs in one process at once would interleave their draws: the tests of
/// this file take turns.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn shared() -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// Every tensor of a weights file: (path, values), in module order. (The files themselves
/// differ: burnpack records each parameter's id, which is random per run.)
fn weights(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let mut m = SegVol::<Flex>::new(&SegVolConfig::tiny(), &Default::default());
    segvol_core::weights::load_segvol(&mut m, path).expect("load");
    m.collect(None, None, false)
        .into_iter()
        .map(|t| {
            let v = t
                .to_data()
                .expect("data")
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32");
            (t.full_path(), v)
        })
        .collect()
}

fn config() -> TrainConfig {
    let mut c = TrainConfig::from_toml(
        r#"
seed = 11
[model]
preset = "tiny"
[base_box]
steps = 4
batch = 1
warmup = 1
val_every = 0
checkpoint_every = 2
[base_points]
steps = 0
[corrector]
steps = 0
"#,
    )
    .expect("config");
    c.data.dir = shared().join("data/npz");
    c
}

fn split() -> Split {
    Split {
        train: vec!["ct_kidney_right".into(), "ct_vertebra_L3".into()],
        validation: vec![],
        source: "test".into(),
    }
}

#[test]
fn a_resumed_run_continues_from_the_same_state() {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let tmp = tempfile::tempdir().expect("tmp");
    // Uninterrupted.
    let a = Run::create(&tmp.path().join("a"), config(), split()).expect("run a");
    train_stages::<Autodiff<Flex>>(&a, &[Stage::BaseBox], &device, &mut |_| true).expect("a");
    // Stopped after step 3 (between checkpoints: the stop itself checkpoints), then resumed
    // from the folder alone.
    let b = Run::create(&tmp.path().join("b"), config(), split()).expect("run b");
    let mut stop_at_3 = |p: &Progress| p.step < 3;
    let e = train_stages::<Autodiff<Flex>>(&b, &[Stage::BaseBox], &device, &mut stop_at_3)
        .expect_err("stops");
    assert!(matches!(e, TrainError::Stopped { step: 3, .. }), "{e}");
    assert_eq!(b.state(Stage::BaseBox).map(|s| s.step), Some(3));
    assert!(!b.final_weights(Stage::BaseBox).exists());
    let b = Run::open(&tmp.path().join("b")).expect("reopen");
    train_stages::<Autodiff<Flex>>(&b, &[Stage::BaseBox], &device, &mut |_| true).expect("b");
    let wa = weights(&a.final_weights(Stage::BaseBox));
    let wb = weights(&b.final_weights(Stage::BaseBox));
    assert_eq!(wa.len(), wb.len());
    for ((pa, va), (pb, vb)) in wa.iter().zip(&wb) {
        assert_eq!(pa, pb);
        assert!(
            va == vb,
            "{pa}: resumed weights differ from the uninterrupted run's"
        );
    }
    // And training moved the weights: a run of 0 steps differs.
    let mut c0 = config();
    c0.base_box.steps = 1;
    let c = Run::create(&tmp.path().join("c"), c0, split()).expect("run c");
    train_stages::<Autodiff<Flex>>(&c, &[Stage::BaseBox], &device, &mut |_| true).expect("c");
    let wc = weights(&c.final_weights(Stage::BaseBox));
    assert!(wc != wa);
    // The log has one line per step of each run, and the resumed run's log continues.
    let steps: Vec<u64> = b
        .log_lines()
        .iter()
        .filter(|l| l["step"].is_u64() && l["loss"].is_number())
        .filter_map(|l| l["step"].as_u64())
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
}

#[test]
fn stop_after_ends_the_stage_early_on_the_full_schedule() {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut c = config();
    c.base_box.stop_after = Some(3);
    let (lr, min_lr, warmup) = (c.base_box.lr, c.base_box.min_lr, c.base_box.warmup);
    let r = Run::create(&tmp.path().join("r"), c, split()).expect("run");
    train_stages::<Autodiff<Flex>>(&r, &[Stage::BaseBox], &device, &mut |_| true).expect("r");
    // The stage ended as done, with its final weights, after 3 of its 4 steps ...
    assert!(r.final_weights(Stage::BaseBox).exists());
    let s = r.state(Stage::BaseBox).expect("state");
    assert_eq!((s.step, s.done), (3, true));
    // ... and every step's learning rate is the 4-step schedule's (a 3-step schedule would end
    // at min_lr on step 3).
    let lrs: Vec<(u64, f64)> = r
        .log_lines()
        .iter()
        .filter(|l| l["loss"].is_number())
        .filter_map(|l| Some((l["step"].as_u64()?, l["lr"].as_f64()?)))
        .collect();
    assert_eq!(lrs.len(), 3, "{lrs:?}");
    for (step, got) in lrs {
        let want = segvol_train::config::lr_at(step as usize - 1, 4, warmup, lr, min_lr);
        assert!(
            (got - want).abs() < 1e-9,
            "step {step}: lr {got}, want {want}"
        );
    }
    let short = segvol_train::config::lr_at(2, 3, warmup, lr, min_lr);
    let full = segvol_train::config::lr_at(2, 4, warmup, lr, min_lr);
    assert!(
        (short - full).abs() > 1e-5,
        "the test tells the schedules apart"
    );
}
