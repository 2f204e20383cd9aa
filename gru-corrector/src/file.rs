//! Corrector files. We save in PyTorch's layout (`gru.weight_ih_l0 [3H, 8K]` with the gates
//! packed (r, z, n), `delta_head.weight [2K, H+6K]`, `coord_head.weight [6K, H+6K]`, biases) as
//! safetensors with the config in the metadata, so the same file loads in PyTorch
//! (`nn.GRU(8K, H, batch_first=True)` + two `nn.Linear`) and a corrector trained in PyTorch
//! loads here. [`load_corrector`] reads that layout from `.safetensors` or a PyTorch
//! `.pth`/`.pt`/`.bin` (keys optionally under `model.`, `corrector.` or `module.`), strictly:
//! a missing, misshapen or unexpected tensor is an error naming it.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use burn::nn::Linear;
use burn::nn::gru::Gru;
use burn::tensor::backend::Backend;

use crate::GruCorrectorConfig;
use crate::model::GruCorrector;
use crate::pytorch::{GruLoadError, read_checkpoint, safetensors_checkpoint};

/// Metadata key naming the format.
pub const FORMAT_KEY: &str = "format";
/// Its value.
pub const FORMAT: &str = "segvol-gru";

const PREFIXES: [&str; 5] = ["", "model.", "corrector.", "module.", "state_dict."];

/// Loads a corrector (see the module docs for the layout). `max_shift` and `splat_radius` come
/// from the file's metadata when present (ours), else the defaults (1 voxel, 0).
///
/// # Errors
/// [`GruLoadError`] naming the file and the tensor at fault; a seed five-block checkpoint is
/// refused with a pointer to [`crate::seed::load_seed`].
pub fn load_corrector<B: Backend>(
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<GruCorrector<B>, GruLoadError> {
    corrector_from(read_checkpoint(path.as_ref())?, device)
}

/// [`load_corrector`] from the bytes of a safetensors file (e.g. a corrector embedded with
/// `include_bytes!`); `name` names it in errors.
///
/// # Errors
/// As [`load_corrector`]; also when the bytes are not safetensors.
pub fn load_corrector_bytes<B: Backend>(
    bytes: &[u8],
    name: &str,
    device: &B::Device,
) -> Result<GruCorrector<B>, GruLoadError> {
    let path = Path::new(name);
    let ck = safetensors_checkpoint(path, bytes)?.ok_or_else(|| GruLoadError::Format {
        path: path.to_path_buf(),
        detail: "not a safetensors file".into(),
    })?;
    corrector_from(ck, device)
}

fn corrector_from<B: Backend>(
    ck: crate::pytorch::Checkpoint,
    device: &B::Device,
) -> Result<GruCorrector<B>, GruLoadError> {
    let path = ck.path.clone();
    let path = path.as_path();
    let wrong = |detail: String| GruLoadError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let Some(prefix) = ck.find_prefix(&PREFIXES, "gru.weight_ih_l0") else {
        if ck
            .find_prefix(&PREFIXES, "gru_blocks.0.gru.weight_ih_l0")
            .is_some()
        {
            return Err(wrong(
                "the seed's five-block layout (gru_blocks.*); load it with segvol_gru::seed::load_seed"
                    .into(),
            ));
        }
        let mut keys: Vec<&String> = ck.tensors.keys().collect();
        keys.sort();
        keys.truncate(3);
        return Err(wrong(format!(
            "not a GRU corrector: no `gru.weight_ih_l0` (first keys: {keys:?})"
        )));
    };
    let gru_w = ck.gru(&format!("{prefix}gru."))?;
    if gru_w.d_input % 8 != 0 {
        return Err(GruLoadError::Tensor {
            path: path.to_path_buf(),
            key: format!("{prefix}gru.weight_ih_l0"),
            detail: format!("input size {} is not 8·K", gru_w.d_input),
        });
    }
    let meta = |key: &str| ck.metadata.get(key);
    let parse_meta = |key: &str| -> Result<Option<f64>, GruLoadError> {
        meta(key)
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| wrong(format!("metadata `{key}` = {v:?} is not a number")))
            })
            .transpose()
    };
    let has_coord = ck
        .tensors
        .contains_key(&format!("{prefix}coord_head.weight"));
    let cfg = GruCorrectorConfig {
        k: gru_w.d_input / 8,
        hidden: gru_w.d_hidden,
        coord_head: has_coord,
        max_shift: parse_meta("max_shift")?.map_or(1.0, |v| v as f32),
        splat_radius: parse_meta("splat_radius")?.map_or(0, |v| v.max(0.0) as usize),
    };
    cfg.validate().map_err(wrong)?;
    let (k, h) = (cfg.k, cfg.hidden);
    let delta = ck.linear::<B>(&format!("{prefix}delta_head."), h + 6 * k, 2 * k, device)?;
    let coord = if has_coord {
        Some(ck.linear::<B>(&format!("{prefix}coord_head."), h + 6 * k, 6 * k, device)?)
    } else {
        None
    };
    let mut expected: BTreeSet<String> =
        ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
            .iter()
            .map(|n| format!("{prefix}gru.{n}"))
            .collect();
    for head in ["delta_head", "coord_head"] {
        if head == "delta_head" || has_coord {
            expected.insert(format!("{prefix}{head}.weight"));
            expected.insert(format!("{prefix}{head}.bias"));
        }
    }
    let mut unexpected: Vec<&String> = ck
        .tensors
        .keys()
        .filter(|k| !expected.contains(*k))
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(wrong(format!(
            "unexpected tensors for a corrector: {unexpected:?}"
        )));
    }
    Ok(GruCorrector::from_parts(
        gru_w.to_burn(device),
        delta,
        coord,
        &cfg,
    ))
}

fn host<B: Backend, const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

/// Packs burn's three gate controllers back into PyTorch's `[3H, ·]` (r, z, n) rows.
fn pack_gru<B: Backend>(gru: &Gru<B>) -> [(String, Vec<usize>, Vec<f32>); 4] {
    let gates = [&gru.reset_gate, &gru.update_gate, &gru.new_gate];
    let mut w_ih = Vec::new();
    let mut w_hh = Vec::new();
    let mut b_ih = Vec::new();
    let mut b_hh = Vec::new();
    let mut dims = (0, 0, 0);
    for g in gates {
        let [i, h] = g.input_transform.weight.val().dims();
        let [hh, _] = g.hidden_transform.weight.val().dims();
        dims = (i, h, hh);
        w_ih.extend(host(g.input_transform.weight.val().transpose()));
        w_hh.extend(host(g.hidden_transform.weight.val().transpose()));
        let bias = |l: &Linear<B>, n: usize| {
            l.bias
                .as_ref()
                .map_or_else(|| vec![0.0; n], |b| host(b.val()))
        };
        b_ih.extend(bias(&g.input_transform, h));
        b_hh.extend(bias(&g.hidden_transform, h));
    }
    let (i, h, hh) = dims;
    [
        ("gru.weight_ih_l0".into(), vec![3 * h, i], w_ih),
        ("gru.weight_hh_l0".into(), vec![3 * h, hh], w_hh),
        ("gru.bias_ih_l0".into(), vec![3 * h], b_ih),
        ("gru.bias_hh_l0".into(), vec![3 * h], b_hh),
    ]
}

fn linear_tensors<B: Backend>(name: &str, l: &Linear<B>) -> [(String, Vec<usize>, Vec<f32>); 2] {
    let [d_in, d_out] = l.weight.val().dims();
    let bias = l
        .bias
        .as_ref()
        .map_or_else(|| vec![0.0; d_out], |b| host(b.val()));
    [
        (
            format!("{name}.weight"),
            vec![d_out, d_in],
            host(l.weight.val().transpose()),
        ),
        (format!("{name}.bias"), vec![d_out], bias),
    ]
}

/// Saves a corrector (module docs: PyTorch layout, safetensors, config in the metadata),
/// atomically: written to a temporary file beside `path`, then renamed.
///
/// # Errors
/// The I/O error, naming the file.
pub fn save_corrector<B: Backend>(
    corrector: &GruCorrector<B>,
    path: impl AsRef<Path>,
) -> Result<(), GruLoadError> {
    let path = path.as_ref();
    let cfg = corrector.config();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = pack_gru(&corrector.gru).into();
    tensors.extend(linear_tensors("delta_head", &corrector.delta_head));
    if let Some(c) = &corrector.coord_head {
        tensors.extend(linear_tensors("coord_head", c));
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| GruLoadError::Format {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let metadata: HashMap<String, String> = [
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
        ("k".into(), cfg.k.to_string()),
        ("hidden".into(), cfg.hidden.to_string()),
        ("coord_head".into(), cfg.coord_head.to_string()),
        ("max_shift".into(), cfg.max_shift.to_string()),
        ("splat_radius".into(), cfg.splat_radius.to_string()),
    ]
    .into_iter()
    .collect();
    let data = safetensors::serialize(views, Some(metadata)).map_err(|e| GruLoadError::Format {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let io = |source: std::io::Error| GruLoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    segvol_atomic::write_bytes(path, &data).map_err(io)
}
