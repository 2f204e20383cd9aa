//! The harness end to end on small hand-made cases, against values derived by hand: case
//! selection and shards, a dataset run with an oracle and an empty predictor (DSC known
//! exactly), the saved masks, the run folder, shards merged back into the unsharded run, and a
//! comparison table.

use std::path::{Path, PathBuf};

use segvol_eval::protocol::{PredictRequest, Predictor, ProtocolOptions};
use segvol_harness::HarnessError;
use segvol_harness::dataset::{DatasetOptions, mean_sd, run_dataset, select_cases, write_run};
use segvol_harness::report::{compare, merge_shards, read_run};
use segvol_io::npy::{NpyArray, NpyData};

type Boxed = Box<dyn std::error::Error + Send + Sync>;

const DIMS: [usize; 3] = [6, 10, 12];

/// A case whose ground truth is one block of label 1 (and, with `two`, one of label 2).
fn write_case(path: &Path, two: bool) -> Vec<u8> {
    let n: usize = DIMS.iter().product();
    let mut gts = vec![0u8; n];
    let mut img = vec![10u8; n];
    for z in 1..4 {
        for y in 2..6 {
            for x in 3..8 {
                let i = (z * DIMS[1] + y) * DIMS[2] + x;
                gts[i] = 1;
                img[i] = 200;
            }
        }
    }
    if two {
        for z in 3..5 {
            for y in 7..9 {
                for x in 8..11 {
                    gts[(z * DIMS[1] + y) * DIMS[2] + x] = 2;
                }
            }
        }
    }
    let arr = |d: NpyData| NpyArray {
        shape: DIMS.to_vec(),
        data: d,
    };
    let spacing = NpyArray {
        shape: vec![3],
        data: NpyData::F64(vec![1.0, 1.0, 1.0]),
    };
    segvol_io::write_npz(
        path,
        &[
            ("imgs", &arr(NpyData::U8(img))),
            ("gts", &arr(NpyData::U8(gts.clone()))),
            ("spacing", &spacing),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    gts
}

/// Returns the ground truth it was given at every step.
struct Oracle(Vec<u8>);
impl Predictor for Oracle {
    fn predict(&mut self, _: &PredictRequest<'_>) -> Result<Vec<u8>, Boxed> {
        Ok(self.0.clone())
    }
}

/// Predicts nothing.
struct Empty;
impl Predictor for Empty {
    fn predict(&mut self, req: &PredictRequest<'_>) -> Result<Vec<u8>, Boxed> {
        Ok(vec![0; req.dims.iter().product()])
    }
}

fn dataset(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    ["CT_b", "MR_c", "CT_a"]
        .iter()
        .map(|n| {
            let p = dir.join(format!("{n}.npz"));
            let g = write_case(&p, *n == "MR_c");
            (p, g)
        })
        .collect()
}

fn opts(masks: Option<PathBuf>) -> DatasetOptions {
    DatasetOptions {
        protocol: ProtocolOptions::default(),
        gt_dir: None,
        masks,
        max_voxels: u64::MAX,
    }
}

fn names(v: &[PathBuf]) -> Vec<String> {
    v.iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn cases_are_sorted_filtered_and_sharded() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    dataset(tmp.path());
    std::fs::write(tmp.path().join("notes.txt"), "not a case").unwrap_or_else(|e| panic!("{e}"));
    let all = select_cases(tmp.path(), None, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&all), ["CT_a.npz", "CT_b.npz", "MR_c.npz"]);
    let only = ["MR_c".to_string(), "CT_a".to_string()];
    let some = select_cases(tmp.path(), Some(&only), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&some), ["CT_a.npz", "MR_c.npz"]);
    // Shard i of n takes every n-th case from the i-th: 0/2 → a, c; 1/2 → b.
    let s0 = select_cases(tmp.path(), None, Some("0/2")).unwrap_or_else(|e| panic!("{e}"));
    let s1 = select_cases(tmp.path(), None, Some("1/2")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&s0), ["CT_a.npz", "MR_c.npz"]);
    assert_eq!(names(&s1), ["CT_b.npz"]);
    for bad in ["2/2", "1", "a/b", "0/0"] {
        let e = select_cases(tmp.path(), None, Some(bad)).map(|_| ()).err();
        assert!(
            matches!(&e, Some(HarnessError::Invalid(m)) if m.contains("--shard")),
            "{bad}: {e:?}"
        );
    }
    let missing = ["CT_z".to_string()];
    let e = select_cases(tmp.path(), Some(&missing), None)
        .map(|_| ())
        .err();
    assert!(
        matches!(&e, Some(HarnessError::Invalid(m)) if m.contains("CT_z.npz")),
        "{e:?}"
    );
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let e = select_cases(empty.path(), None, None).map(|_| ()).err();
    assert!(
        matches!(&e, Some(HarnessError::File { detail, .. }) if detail.contains("no case")),
        "{e:?}"
    );
}

#[test]
fn a_dataset_run_scores_an_oracle_and_an_empty_model_and_merges_back() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap_or_else(|e| panic!("{e}"));
    let gts = dataset(&data);
    let gt_of = |name: &str| {
        gts.iter()
            .find(|(p, _)| p.file_name().is_some_and(|n| n == name))
            .map(|(_, g)| g.clone())
            .unwrap_or_else(|| panic!("{name}"))
    };
    let cases = select_cases(&data, None, None).unwrap_or_else(|e| panic!("{e}"));
    let masks = tmp.path().join("masks");
    let o = opts(Some(masks.clone()));
    let bar = indicatif::ProgressBar::hidden();
    let results = run_dataset(
        &cases,
        &["empty", "oracle+x"],
        &o,
        |l, k| -> Result<Box<dyn Predictor>, Boxed> {
            Ok(if k == 0 {
                Box::new(Empty)
            } else {
                Box::new(Oracle(gt_of(&l.name)))
            })
        },
        &bar,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bar.position(), 6, "one tick per case and variant");
    assert_eq!(results.len(), 2);
    for (variant, rows) in &results {
        assert_eq!(rows.len(), 3);
        for (name, r) in rows {
            assert_eq!(r.steps.len(), 6, "{variant} {name}");
            // No boxes: the box step is skipped and scores 0 (CHALLENGE.md); after it the
            // oracle is exact and the empty model is 0 everywhere.
            let want = if variant == "empty" { 0.0 } else { 1.0 };
            assert_eq!(r.steps[0].dsc, 0.0, "{variant} {name}");
            for s in &r.steps[1..] {
                assert_eq!(s.dsc, want, "{variant} {name}");
                assert_eq!(s.class_dsc.len(), if name == "MR_c.npz" { 2 } else { 1 });
            }
            // AUC = 0.5·d₁ + d₂ + d₃ + d₄ + 0.5·d₅ over the clicks = 4 for an exact model.
            assert_eq!(r.dsc_auc, 4.0 * want, "{variant} {name}");
            assert_eq!(r.dsc_final, want);
        }
    }

    // Saved masks: per variant folder (`+` → `_`), `segs` = the last step, `all_segs` = the
    // five steps the model ran (the skipped box step has none).
    let saved = segvol_io::read_npz(masks.join("oracle_x").join("MR_c.npz"))
        .unwrap_or_else(|e| panic!("{e}"));
    let get = |k: &str| {
        saved
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no {k}"))
    };
    assert_eq!(get("segs").shape, DIMS.to_vec());
    assert_eq!(get("segs").data, NpyData::U8(gt_of("MR_c.npz")));
    assert_eq!(get("all_segs").shape, vec![5, DIMS[0], DIMS[1], DIMS[2]]);

    // The run folder.
    let run = tmp.path().join("run");
    let mut header = serde_json::Map::new();
    header.insert("data".into(), serde_json::json!("data"));
    let summary = write_run(&run, &results, 6, header).unwrap_or_else(|e| panic!("{e}"));
    for f in [
        "metrics.csv",
        "metrics_empty.csv",
        "metrics_oracle_x.csv",
        "summary.json",
        "dsc_per_click.png",
        "dsc_per_click.svg",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}"));
    // metrics.csv is the last (main) variant's table.
    assert_eq!(
        read(run.join("metrics.csv")),
        read(run.join("metrics_oracle_x.csv"))
    );
    assert_eq!(summary["data"], "data");
    let v = &summary["variants"][1];
    assert_eq!(v["variant"], "oracle+x");
    assert_eq!(v["mean"]["cases"], 3);
    assert_eq!(v["mean"]["DSC_AUC"], 4.0);
    assert_eq!(v["per_modality"]["CT"]["cases"], 2);
    assert_eq!(v["per_modality"]["MR"]["cases"], 1);
    // One entry per case and class: 1 + 1 + 2.
    assert_eq!(v["per_class"].as_array().map(Vec::len), Some(4));
    assert_eq!(summary["variants"][0]["mean"]["DSC_Final"], 0.0);

    // The same run in two shards, merged, gives the unsharded tables.
    let mut shard_dirs = Vec::new();
    for (i, shard) in ["0/2", "1/2"].iter().enumerate() {
        let part: Vec<(String, Vec<_>)> = results
            .iter()
            .map(|(v, rows)| {
                let keep = rows
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| k % 2 == i)
                    .map(|(_, r)| r.clone())
                    .collect();
                (v.clone(), keep)
            })
            .collect();
        let dir = tmp.path().join(format!("shard{i}"));
        let mut h = serde_json::Map::new();
        h.insert("shard".into(), serde_json::json!(shard));
        write_run(&dir, &part, 6, h).unwrap_or_else(|e| panic!("{e}"));
        shard_dirs.push(dir);
    }
    let runs: Vec<_> = shard_dirs
        .iter()
        .map(|d| read_run(d).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let merged = tmp.path().join("merged");
    let n = merge_shards(&runs, &merged, &["test".into()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 3);
    for f in ["metrics.csv", "metrics_empty.csv", "metrics_oracle_x.csv"] {
        assert_eq!(read(merged.join(f)), read(run.join(f)), "{f}");
    }
    // One shard alone is refused: its split has two.
    let e = merge_shards(&runs[..1], &merged, &[]).map(|_| ()).err();
    assert!(
        matches!(&e, Some(HarnessError::Invalid(m)) if m.contains("1/2")),
        "{e:?}"
    );

    // Side by side: one table row per run and variant, with the means.
    let both = [
        read_run(&run).unwrap_or_else(|e| panic!("{e}")),
        read_run(&merged).unwrap_or_else(|e| panic!("{e}")),
    ];
    let names = ["one".to_string(), "merged".to_string()];
    let md =
        compare(&both, Some(&names), &tmp.path().join("cmp")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(md.lines().count(), 2 + 4, "{md}");
    assert!(
        md.contains("| one | oracle_x | 3 | 0.0000 | 1.0000 |"),
        "{md}"
    );
    let e = compare(&both, Some(&names[..1]), &tmp.path().join("cmp"))
        .map(|_| ())
        .err();
    assert!(matches!(&e, Some(HarnessError::Invalid(_))), "{e:?}");
}

#[test]
fn a_failing_model_is_a_typed_error_naming_the_case() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    dataset(tmp.path());
    let cases = select_cases(tmp.path(), None, None).unwrap_or_else(|e| panic!("{e}"));
    struct Fails;
    impl Predictor for Fails {
        fn predict(&mut self, _: &PredictRequest<'_>) -> Result<Vec<u8>, Boxed> {
            Err("out of memory".into())
        }
    }
    let bar = indicatif::ProgressBar::hidden();
    let e = run_dataset(
        &cases,
        &["x"],
        &opts(None),
        |_, _| -> Result<Box<dyn Predictor>, Boxed> { Ok(Box::new(Fails)) },
        &bar,
    )
    .map(|_| ())
    .err();
    let msg = e.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        matches!(&e, Some(HarnessError::Protocol { case, .. }) if case == "CT_a.npz"),
        "{e:?}"
    );
    assert!(msg.contains("out of memory"), "{msg}");
    // A model that cannot be made is the caller's error, passed on.
    let e = run_dataset(
        &cases,
        &["x"],
        &opts(None),
        |_, _| -> Result<Box<dyn Predictor>, Boxed> { Err("no weights".into()) },
        &bar,
    )
    .map(|_| ())
    .err();
    assert!(
        matches!(&e, Some(HarnessError::Model(m)) if m.to_string() == "no weights"),
        "{e:?}"
    );
}

#[test]
fn mean_and_population_sd() {
    // Hand-derived: mean 5, deviations −3, −1, −1, −1, 0, 0, 2, 4 → variance 32 / 8 = 4.
    assert_eq!(
        mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]),
        (5.0, 2.0)
    );
    assert_eq!(mean_sd(&[]), (0.0, 0.0));
}
