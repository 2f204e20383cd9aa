//! `segvol sample --prob P --clicks "z,y,x,fg;…" [--k --tau --radius --logits --spacing] --json`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use segvol_sampler::{Click, MapKind, SampledSet, SamplerConfig, sample};
use serde_json::json;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Probability (or logit) map: .npy (D,H,W) or (1,1,D,H,W), .nii/.nii.gz, or a .npz `imgs`.
    #[arg(long)]
    pub prob: PathBuf,
    /// Clicks in voxel indices, `z,y,x,fg` or `z,y,x,bg`, separated by `;`, in time order.
    #[arg(long, default_value = "")]
    pub clicks: String,
    /// Rows per set.
    #[arg(long, default_value_t = 200)]
    pub k: usize,
    /// Uncertainty band τ: voxels with τ < p < 1 − τ.
    #[arg(long, default_value_t = 0.1)]
    pub tau: f32,
    /// Error-set radius (voxels, or mm with --spacing / --use-file-spacing).
    #[arg(long, default_value_t = 8.0)]
    pub radius: f64,
    /// The map holds logits, not probabilities.
    #[arg(long)]
    pub logits: bool,
    /// Anisotropic spacing `z,y,x` in mm (the radius is then in mm).
    #[arg(long, conflicts_with = "use_file_spacing")]
    pub spacing: Option<String>,
    /// Take the spacing from the file (NIfTI header / npz `spacing`); the radius is then in mm.
    #[arg(long)]
    pub use_file_spacing: bool,
    /// Print JSON (the two sets with coordinates, values and valid flags).
    #[arg(long)]
    pub json: bool,
}

pub fn parse_clicks(s: &str) -> Result<Vec<Click>> {
    Ok(segvol_io::prompt::parse_clicks(s)?
        .into_iter()
        .map(|(zyx, foreground)| Click { zyx, foreground })
        .collect())
}

pub fn parse_zyx(s: &str, what: &str) -> Result<[f64; 3]> {
    Ok(segvol_io::prompt::parse_zyx(s, what)?)
}

fn set_json(set: &SampledSet) -> serde_json::Value {
    let k = set.coords.len();
    json!({
        "coords": set.coords,
        "values": set.values,
        "keys": set.keys,
        "valid": (0..k).map(|i| set.is_valid(i)).collect::<Vec<_>>(),
        "n_valid": set.n_valid,
        "n_candidates": set.n_candidates,
    })
}

pub fn run(args: &SampleArgs) -> Result<()> {
    let map = segvol_io::read_image(&args.prob)?;
    let dims = map.dims();
    let clicks = parse_clicks(&args.clicks)?;
    let spacing = match (&args.spacing, args.use_file_spacing) {
        (Some(s), _) => Some(parse_zyx(s, "--spacing")?),
        (None, true) => Some(map.spacing()),
        (None, false) => None,
    };
    let cfg = SamplerConfig {
        k: args.k,
        tau: args.tau,
        radius: args.radius,
        spacing,
        map: if args.logits {
            MapKind::Logits
        } else {
            MapKind::Probabilities
        },
        ..Default::default()
    };
    let probs = map.to_f32();
    let state = sample(dims, &probs.data, &clicks, &cfg)
        .with_context(|| format!("sampling {}", args.prob.display()))?;
    if args.json {
        let j = json!({
            "shape_zyx": dims,
            "k": state.k,
            "first_click": state.first_click,
            "uncertainty": set_json(&state.uncertainty),
            "error": set_json(&state.error),
        });
        out!("{}", serde_json::to_string(&j)?);
    } else {
        out!("{}: {}", args.prob.display(), state.summary());
        for (name, set) in [("uncertainty", &state.uncertainty), ("error", &state.error)] {
            let show = set.n_valid.min(5);
            let rows: Vec<String> = (0..show)
                .map(|i| {
                    format!(
                        "{:?} value {:.4} key {:.4}",
                        set.coords[i], set.values[i], set.keys[i]
                    )
                })
                .collect();
            out!("  {name} (first {show}): {}", rows.join("; "));
        }
    }
    Ok(())
}
