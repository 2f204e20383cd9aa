//! Embed the interaction sampler in your own tool: read a probability map, give it the
//! clicks, and use the two ranked sets it returns.
//!
//! ```text
//! cargo run -p segvol-examples --example embed_sampler -- PROB.(npy|nii.gz) "z,y,x,fg;z,y,x,bg"
//! ```

use anyhow::{Context, Result, bail};
use segvol_sampler::{Click, SamplerConfig, sample};

fn parse_clicks(s: &str) -> Result<Vec<Click>> {
    s.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let f: Vec<&str> = p.split(',').map(str::trim).collect();
            if f.len() != 4 {
                bail!("click `{p}`: expected z,y,x,fg|bg");
            }
            let zyx = [f[0].parse()?, f[1].parse()?, f[2].parse()?];
            Ok(Click {
                zyx,
                foreground: f[3] == "fg",
            })
        })
        .collect()
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: embed_sampler PROB.(npy|nii|nii.gz) \"z,y,x,fg;…\"")?;
    let clicks = parse_clicks(&args.next().unwrap_or_default())?;

    // 1. Any (D, H, W) map of probabilities in [0, 1], as plain f32s in raster order.
    let map = segvol_io::read_image(&path)?.to_f32();

    // 2. Sample. Defaults: K = 200, τ = 0.1, radius 8 voxels; set `spacing` for a mm radius.
    let cfg = SamplerConfig {
        spacing: Some(map.spacing),
        radius: 8.0,
        ..Default::default()
    };
    let state = sample(map.dims, &map.data, &clicks, &cfg)?;

    // 3. Use it: the summary, the best rows, and the flat GRU layouts.
    println!("{}", state.summary());
    for (name, set) in [("uncertain", &state.uncertainty), ("error", &state.error)] {
        for i in 0..set.n_valid.min(3) {
            println!(
                "  {name} #{i}: voxel {:?}, value {:.3}, key {:.3}",
                set.coords[i], set.values[i], set.keys[i]
            );
        }
    }
    println!(
        "GRU input: {} floats (2 tokens × K·8)",
        state.gru_input().len()
    );
    println!(
        "coordinates: {} floats (2K × 3)",
        state.coords_normalized().len()
    );
    Ok(())
}
