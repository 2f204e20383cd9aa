//! The smallest complete use of the library: load a NIfTI, segment from a box with given
//! weights, add a click, save the mask with the image's geometry.
//!
//! ```text
//! cargo run -p segvol-examples --example segment_nifti -- IMAGE.nii.gz WEIGHTS z0,y0,x0,z1,y1,x1 OUT.nii.gz [tiny]
//! cargo run -p segvol-examples --example segment_nifti -- ../shared/data/nifti/ct_kidney_right_img.nii.gz \
//!     ../shared/fixtures/segvol_tiny/weights.safetensors 5,10,8,20,35,30 /tmp/kidney.nii.gz tiny
//! ```

use std::time::Instant;

use anyhow::{Context, Result, bail};
use segvol_backends::Flex;
use segvol_core::pipeline::{Session, VoxelClick};
use segvol_core::{SegVol, SegVolConfig, weights::load_segvol};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!("usage: segment_nifti IMAGE WEIGHTS z0,y0,x0,z1,y1,x1 OUT [base|tiny]");
    }
    let config = if args.get(4).map(String::as_str) == Some("tiny") {
        SegVolConfig::tiny()
    } else {
        SegVolConfig::base()
    };
    let b: Vec<usize> = args[2]
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("box")?;
    if b.len() != 6 {
        bail!("the box needs six numbers");
    }
    let bx = ([b[0], b[1], b[2]], [b[3], b[4], b[5]]);

    // 1. The image, with its geometry (spacing, affine, header).
    let image = segvol_io::read_image(&args[0])?.to_f32();
    // 2. The model on the default CPU backend, with the official weights.
    let device = Default::default();
    let mut model = SegVol::<Flex>::new(&config, &device);
    let report = load_segvol(&mut model, &args[1])?;
    println!(
        "loaded {} tensors ({} ignored on purpose)",
        report.applied.len(),
        report.ignored.len()
    );
    // 3. Encode once, then decode per prompt.
    let t = Instant::now();
    let session = Session::new(&model, &image.data, image.dims, &[bx.0, bx.1], &device)?;
    println!("encoded in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let logits = session.predict(Some(bx), &[])?;
    println!("box decoded in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    // A click in the box centre (a user would click where the mask is wrong).
    let c = [0, 1, 2].map(|a| (bx.0[a] + bx.1[a]) / 2);
    let t = Instant::now();
    let logits2 = session.predict(
        Some(bx),
        &[VoxelClick {
            zyx: c,
            foreground: true,
        }],
    )?;
    println!(
        "box + click decoded in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let _ = logits;
    // 4. Threshold at 0 and save with the image's geometry.
    let mask = image.with_data(logits2.iter().map(|&l| u8::from(l > 0.0)).collect())?;
    segvol_io::write_nifti(&args[3], &mask)?;
    println!("wrote {}", args[3]);
    Ok(())
}
