//! The interactive loop a viewer drives, with `InteractiveSession`: a 2-D box on one slice, a
//! positive and a negative click (GRU-corrected), undo, a second object, and the label map
//! written as NIfTI with the image's geometry. Timings per action.
//!
//! ```text
//! cargo run -p segvol-examples --example interactive_session -- IMAGE.nii.gz WEIGHTS CORRECTOR OUT.nii.gz [tiny]
//! cargo run -p segvol-examples --example interactive_session -- \
//!     ../shared/data/nifti/ct_kidney_right_img.nii.gz ../shared/fixtures/segvol_tiny/weights.safetensors \
//!     gru-corrector/tests/data/corrector.safetensors /tmp/labels.nii.gz tiny
//! ```

use anyhow::{Result, bail};
use segvol_backends::Flex;
use segvol_core::{SegVol, SegVolConfig, weights::load_segvol};
use segvol_interactive::{InteractiveSession, SessionOptions, Update};

fn show(what: &str, u: &Update) {
    println!(
        "{what:<28} changed {:?}  encode {:.2} s  decode {:.3} s",
        u.changed, u.encode_s, u.decode_s
    );
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!("usage: interactive_session IMAGE WEIGHTS CORRECTOR OUT [base|tiny]");
    }
    let config = if args.get(4).map(String::as_str) == Some("tiny") {
        SegVolConfig::tiny()
    } else {
        SegVolConfig::base()
    };
    let image = segvol_io::read_image(&args[0])?.to_f32();
    let device = Default::default();
    let mut model = SegVol::<Flex>::new(&config, &device);
    load_segvol(&mut model, &args[1])?;
    let corrector = segvol_gru::load_corrector::<Flex>(&args[2], &device)?;
    let d = image.dims;
    let mut s = InteractiveSession::new(
        &model,
        Some(&corrector),
        &device,
        image.data.clone(),
        d,
        image.spacing,
    )?;
    // The engine settings (one type for every front end): `live()` is what `segvol view` and
    // `serve` use and the session's default (zoom-in off for speed, clicks stick within 3 mm,
    // positive clicks grow within 20 mm of similar intensity);
    // `SessionOptions::batch()` turns SegVol's zoom-in on, as `segvol eval` runs it.
    s.set_options(SessionOptions {
        click_radius_mm: Some(3.0),
        ..SessionOptions::live()
    });
    // A box drawn on the middle slice (2-D), as a viewer sends it.
    let z = d[0] / 2;
    let (lo, hi) = ([z, d[1] / 4, d[2] / 4], [z, 3 * d[1] / 4, 3 * d[2] / 4]);
    show("2-D box on the middle slice", &s.set_box_2d(0, lo, hi)?);
    show(
        "positive click",
        &s.add_point([z, d[1] / 2, d[2] / 2], true)?,
    );
    show(
        "negative click",
        &s.add_point([z, d[1] / 4 + 1, d[2] / 4 + 1], false)?,
    );
    if let Some(u) = s.undo() {
        show("undo", &u);
    }
    let k = s.next_object();
    println!("object {k:?} committed; a second one:");
    show(
        "3-D box",
        &s.set_box([1, 1, 1], [d[0] / 3, d[1] / 3, d[2] / 3])?,
    );
    let labels = image.with_data(s.label_map())?;
    segvol_io::write_nifti(&args[3], &labels)?;
    println!("wrote {} (labels 1 and 2)", args[3]);
    Ok(())
}
