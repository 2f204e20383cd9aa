//! The interactive loop with the GRU corrector, as a template: box → SegVol prediction →
//! simulated click (the CVPR 2025 rule) → SegVol re-decode with box + clicks → one corrector
//! round on those logits → next click, printing DSC per round with and without the correction
//! (GRU_CORRECTION.md §6, D9). The image embedding is computed once; the corrector's hidden
//! state is carried from round to round by its `CorrectionSession`.
//!
//! ```text
//! cargo run -p segvol-examples --example correction_loop -- CASE.npz SEGVOL_WEIGHTS CORRECTOR [tiny] [CLASS]
//! cargo run -p segvol-examples --example correction_loop -- ../shared/data/npz/ct_kidney_right.npz \
//!     ../shared/fixtures/segvol_tiny/weights.safetensors gru-corrector/tests/data/corrector.safetensors tiny
//! ```
//! `CORRECTOR` = `-` uses an untrained corrector (default config), which shows the mechanics only.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use segvol_backends::Flex;
use segvol_core::pipeline::{Session, VoxelClick};
use segvol_core::{SegVol, SegVolConfig, weights::load_segvol};
use segvol_eval::{dice, simulate_click};
use segvol_gru::{CorrectionSession, GruCorrectorConfig, load_corrector};
use segvol_sampler::Click;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: correction_loop CASE.npz SEGVOL_WEIGHTS CORRECTOR|- [base|tiny] [CLASS]");
    }
    let config = if args.get(3).map(String::as_str) == Some("tiny") {
        SegVolConfig::tiny()
    } else {
        SegVolConfig::base()
    };
    let class: u8 = args.get(4).map_or(Ok(1), |s| s.parse()).context("CLASS")?;

    // 1. A challenge case: image, ground truth, one box per class.
    let case = segvol_io::ChallengeCase::read(&args[0])?;
    let image = case.imgs.context("the case has no `imgs`")?.to_f32();
    let gts = case.gts.context("the case has no `gts`")?;
    let dims = gts.dims;
    let boxes = case.boxes.context("the case has no `boxes`")?;
    let (lo, hi) = boxes
        .get(usize::from(class.max(1)) - 1)
        .context("no box for that class")?
        .zyx_inclusive();
    let bx = (lo.map(|v| v.max(0) as usize), hi.map(|v| v.max(0) as usize));
    let gt: Vec<bool> = gts.data.iter().map(|&v| v == class).collect();

    // 2. SegVol and the corrector on the default CPU backend.
    let device = Default::default();
    let mut model = SegVol::<Flex>::new(&config, &device);
    load_segvol(&mut model, &args[1])?;
    let corrector = if args[2] == "-" {
        println!("untrained corrector (default config): mechanics only");
        GruCorrectorConfig::default().init::<Flex>(&device)
    } else {
        load_corrector::<Flex>(&args[2], &device)?
    };

    // 3. Encode once; the box prediction.
    let t = Instant::now();
    let session = Session::new(&model, &image.data, dims, &[bx.0, bx.1], &device)?;
    println!("encoded in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let logits = session.predict(Some(bx), &[])?;
    let mut pred: Vec<bool> = logits.iter().map(|&l| l > 0.0).collect();
    println!("round 0 (box): DSC {:.4}", dice(&pred, &gt));

    // 4. Click rounds: the simulator clicks on the corrected prediction's largest error.
    let mut clicks: Vec<VoxelClick> = Vec::new();
    let mut corr = CorrectionSession::new(&corrector, &device);
    println!("round | click | DSC SegVol | DSC SegVol+GRU | decode ms | correction ms");
    for round in 1..=5 {
        let Some(c) = simulate_click(&pred, &gt, dims) else {
            println!("no error left");
            break;
        };
        clicks.push(VoxelClick {
            zyx: c.zyx,
            foreground: c.foreground,
        });
        let t = Instant::now();
        let mut logits = session.predict(Some(bx), &clicks)?;
        let decode_ms = t.elapsed().as_secs_f64() * 1e3;
        let base: Vec<bool> = logits.iter().map(|&l| l > 0.0).collect();
        let sc: Vec<Click> = clicks
            .iter()
            .map(|c| Click {
                zyx: c.zyx,
                foreground: c.foreground,
            })
            .collect();
        let report = corr.step(dims, &mut logits, &sc)?;
        pred = logits.iter().map(|&l| l > 0.0).collect();
        println!(
            "{round} | {:?} {} | {:.4} | {:.4} | {decode_ms:.0} | {:.2}",
            c.zyx,
            if c.foreground { "fg" } else { "bg" },
            dice(&base, &gt),
            dice(&pred, &gt),
            report.total_ms()
        );
    }
    Ok(())
}
