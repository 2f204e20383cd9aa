//! `segvol`: the segvol-rs command line.

/// `println!` that ends the program quietly when stdout is closed (`segvol … | head`)
/// instead of panicking on the broken pipe.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod bench;
mod case;
mod classnames;
mod convert;
mod demo;
mod evalcase;
mod evalcmd;
mod evaldata;
mod forward;
mod info;
mod predict;
mod report;
mod sample;
mod segment;
mod serve;
mod train;
mod view;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Interactive 3-D medical image segmentation (SegVol + GRU correction) in Rust.
#[derive(Parser, Debug)]
#[command(name = "segvol", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the interactive loop on a shipped sample with the shipped model: a box, then 3
    /// simulated correction clicks; DSC/NSD per step, NIfTI masks and a
    /// preview picture. No argument needed.
    Demo(demo::DemoArgs),
    /// Print shape, type, spacing, orientation, intensity range and labels of a volume
    /// (.nii, .nii.gz, .npy) or of every key of a challenge .npz (boxes and clicks too).
    Info(info::InfoArgs),
    /// Sample the uncertainty and error sets of one correction round from a probability map.
    Sample(sample::SampleArgs),
    /// DSC, NSD, HD95, ASD and HD of a prediction against the ground truth, per label.
    Metrics(evalcmd::MetricsArgs),
    /// The click the CVPR 2025 evaluator would simulate next (per class, or for --label).
    NextClick(evalcmd::NextClickArgs),
    /// Segment one object from a box (and clicks) with SegVol; writes a mask with the image's
    /// geometry (.nii/.nii.gz) or a challenge `segs` .npz.
    Segment(segment::SegmentArgs),
    /// Run SegVol (optionally with the GRU corrector) through the CVPR 2025 click protocol on a
    /// case with ground truth: DSC/NSD per step, AUCs, timings.
    Eval(evalcase::EvalArgs),
    /// Merge the shards of an `eval --data` run (--merge), or compare runs: a table and one
    /// plot of DSC per step.
    Report(report::ReportArgs),
    /// The CVPR 2025 challenge entry point: segment every class of every .npz in a folder
    /// (boxes, clicks, prev_pred as the evaluator passes them) and write its `segs`.
    Predict(predict::PredictArgs),
    /// Serve the nnInteractive remote protocol: napari's and 3D Slicer's nnInteractive plugins
    /// (remote mode) segment with SegVol + the corrector through it (docs/serve.md).
    Serve(serve::ServeArgs),
    /// Open a volume in the browser viewer on 127.0.0.1: draw a box, click to correct, undo,
    /// several objects, save the label map (docs/viewer.md).
    View(view::ViewArgs),
    /// The raw SegVol call on a model-grid .npy input: logits (and embedding) as .npy.
    Forward(forward::ForwardArgs),
    /// Convert SegVol weights (.bin, .pth, .safetensors) to the fast .bpk format.
    Convert(convert::ConvertArgs),
    /// Benchmark the compiled burn backends on SegVol's encoder pieces.
    Bench(bench::BenchArgs),
    /// Train SegVol (box, then box + points) and the GRU corrector on a folder of challenge
    /// npz; one resumable run folder per run.
    Train(train::TrainArgs),
}

fn main() -> ExitCode {
    // Freed activation buffers stay in the process for the next block / click instead of being
    // unmapped and page-faulted in again (segvol_kernels::keep_freed_memory; measured in
    // docs/performance.md). SEGVOL_MALLOC=system keeps glibc's defaults.
    let tune_malloc = std::env::var_os("SEGVOL_MALLOC").is_none_or(|v| v != "system");
    if tune_malloc {
        segvol_kernels::keep_freed_memory();
    }
    let cli = Cli::parse();
    // Training frees and re-allocates its activations every step on the lanes' threads: one
    // allocator arena keeps that memory mapped (segvol_kernels::one_malloc_arena; measured in
    // docs/training.md). Set before the lanes' threads exist.
    let training = match &cli.command {
        Command::Train(_) => true,
        Command::Bench(b) => b.train,
        _ => false,
    };
    if training && tune_malloc {
        segvol_kernels::one_malloc_arena();
    }
    let result = match cli.command {
        Command::Demo(a) => demo::run(&a),
        Command::Info(a) => info::run(&a),
        Command::Sample(a) => sample::run(&a),
        Command::Metrics(a) => evalcmd::metrics(&a),
        Command::NextClick(a) => evalcmd::next_click(&a),
        Command::Segment(a) => segment::run(&a),
        // A dataset folder or one case; evaldata uses evalcase's arguments, not the reverse.
        Command::Eval(a) => evalcase::model_files(&a).and_then(|files| match &a.data {
            Some(dir) => evaldata::run(&a, dir, files),
            None => evalcase::run(&a, files),
        }),
        Command::Forward(a) => forward::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Report(a) => report::run(&a),
        Command::Serve(a) => serve::run(&a),
        Command::View(a) => view::run(&a),
        Command::Convert(a) => convert::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Train(a) => train::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, no backtrace: the error chain joined with ": ".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segvol_interactive::SessionOptions;

    /// The engine settings each command runs with, from its command line alone.
    fn options(args: &[&str]) -> SessionOptions {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Eval(a) => a.options(),
            Command::Predict(a) => a.options(),
            Command::Segment(a) => a.options(),
            Command::Demo(a) => a.options(),
            Command::View(a) => a.options(),
            Command::Serve(a) => a.options(),
            _ => panic!("{args:?}: not an engine command"),
        }
    }

    /// One set of defaults (issue 23): batch commands take `SessionOptions::batch()`, the live
    /// ones `SessionOptions::live()`, and each flag moves exactly its own field.
    #[test]
    fn every_command_starts_from_one_set_of_defaults() {
        let batch = SessionOptions::batch();
        let live = SessionOptions::live();
        assert!(batch.zoom_in && !live.zoom_in);
        assert_eq!(batch.click_radius_mm, Some(3.0));
        assert_eq!(batch.click_grow_mm, Some(20.0));
        assert!(batch.grow_floor && live.grow_floor);
        assert_eq!(batch.negative_reach_mm, Some(20.0));
        assert!(batch.box_intensity && live.box_intensity);
        assert!(batch.click_teach && live.click_teach);
        assert!(batch.box_surround && live.box_surround);
        assert!(batch.sure_by_rank && live.sure_by_rank);
        assert!(batch.box_smoothing && live.box_smoothing);
        assert_eq!((batch.feedback, live.feedback), (0, 0));
        for args in [
            &["segvol", "eval", "--case", "c.npz"][..],
            &[
                "segvol",
                "predict",
                "--input-dir",
                "in",
                "--output-dir",
                "out",
            ],
            &["segvol", "segment", "--image", "c.npz", "--out", "s.npz"],
            &["segvol", "demo"],
        ] {
            assert_eq!(options(args), batch, "{args:?}");
        }
        for args in [&["segvol", "view", "i.nii.gz"][..], &["segvol", "serve"]] {
            assert_eq!(options(args), live, "{args:?}");
        }
        let e = options(&[
            "segvol",
            "eval",
            "--case",
            "c.npz",
            "--no-zoom-in",
            "--click-radius",
            "off",
            "--click-grow",
            "off",
            "--grow-floor",
            "off",
            "--negative-reach",
            "off",
            "--box-intensity",
            "off",
            "--click-teach",
            "off",
            "--box-surround",
            "off",
            "--sure-by-rank",
            "off",
            "--box-smoothing",
            "off",
            "--feedback",
            "4",
        ]);
        assert_eq!(
            e,
            SessionOptions {
                zoom_in: false,
                click_radius_mm: None,
                click_grow_mm: None,
                grow_floor: false,
                negative_reach_mm: None,
                box_intensity: false,
                click_teach: false,
                box_surround: false,
                sure_by_rank: false,
                box_smoothing: false,
                feedback: 4
            }
        );
        let s = options(&[
            "segvol",
            "serve",
            "--zoom-in",
            "--click-radius",
            "6",
            "--click-grow",
            "12",
            "--negative-reach",
            "30",
        ]);
        assert_eq!(
            s,
            SessionOptions {
                zoom_in: true,
                click_radius_mm: Some(6.0),
                click_grow_mm: Some(12.0),
                negative_reach_mm: Some(30.0),
                ..live
            }
        );
    }
}
