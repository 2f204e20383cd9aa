//! Loading PyTorch SegVol weights: every key translation in one table (SEGVOL.md §11), applied
//! through burn-store, which also transposes Linear weights and renames norm `weight`/`bias` to
//! `gamma`/`beta`.
//!
//! Supported files: HF `pytorch_model.bin` and `.safetensors` (`model.<part>.…`), the original
//! `SegVol_v1.pth` (`{'model': {'module.<part>.…'}}`) and the encoder-only `vit_pretrain.ckpt`
//! (`{'state_dict': {'model.encoder.…'}}`, encoder only). The CLIP text tower
//! (`model.text_encoder.…`) loads with the rest when the file has it ([`load_segvol`]), or on
//! its own ([`load_text_encoder`]).

use std::path::{Path, PathBuf};

use burn::tensor::DType;
use burn::tensor::backend::Backend;
use burn_store::{
    ApplyResult, BurnpackError, BurnpackStore, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    PytorchStore, PytorchStoreError, SafetensorsStore, SafetensorsStoreError, TensorSnapshot,
};

use crate::image_encoder::ImageEncoder;
use crate::model::SegVol;
use crate::text::{TextConfig, TextEncoder};

/// Checkpoint key (after the prefix rules) → our module path, for the image encoder.
/// Regexes applied in order by burn-store's `KeyRemapper`.
pub const IMAGE_ENCODER_REMAPS: [(&str, &str); 4] = [
    // Prefix rules of SEGVOL.md §11.2: HF/challenge `model.`, SegVol_v1 `module.`,
    // vit_pretrain `model.encoder.`.
    (r"^(model\.|module\.)?(image_encoder|encoder)\.", ""),
    // MONAI's nn.Sequential(Rearrange, Linear) → our single Linear.
    (
        r"^patch_embedding\.patch_embeddings\.1\.",
        "patch_embedding.patch_embeddings.",
    ),
    // MONAI's MLPBlock is flattened into the block.
    (r"\.mlp\.linear1\.", ".linear1."),
    (r"\.mlp\.linear2\.", ".linear2."),
    // Nothing else differs: blocks.N.{norm1,norm2,attn.qkv,attn.out_proj}, norm.
];

/// What a load did: tensors applied, checkpoint tensors not used (other model parts, or ignored
/// on purpose), and model tensors the checkpoint lacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Our module paths that received a tensor.
    pub applied: Vec<String>,
    /// Checkpoint tensors that went nowhere.
    pub unused: Vec<String>,
    /// Our module paths with no tensor in the checkpoint.
    pub missing: Vec<String>,
    /// Checkpoint tensors skipped on purpose ([`IGNORED_ON_PURPOSE`]).
    pub ignored: Vec<String>,
}

/// Why weights could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The file does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The extension is none of `.bpk`, `.safetensors`, `.bin`, `.pth`, `.pt`, `.ckpt`.
    #[error("{}: unknown weight format (expected .bpk, .safetensors, .bin, .pth, .pt or .ckpt)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read as that format (truncated, corrupt).
    #[error("{}: cannot read weights: {detail}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        detail: String,
    },
    /// Tensors of the model are absent, or a tensor's shape differs: the wrong checkpoint or the
    /// wrong config.
    #[error("{}: not a checkpoint for this model/config: {detail}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Missing tensors and shape errors, summarised.
        detail: String,
    },
}

/// A store's "validation failed" (shape mismatches) is the model/config mismatch; anything else
/// is a read error. Long burn-store messages are cut to their start.
fn store_error(path: &Path, validation: Option<&str>, other: String) -> WeightsError {
    let cut = |s: &str| {
        let mut t: String = s.chars().take(400).collect();
        if s.chars().count() > 400 {
            t.push_str(" …");
        }
        t
    };
    match validation {
        Some(msg) => WeightsError::Mismatch {
            path: path.to_path_buf(),
            detail: cut(msg),
        },
        None => WeightsError::Read {
            path: path.to_path_buf(),
            detail: cut(&other),
        },
    }
}

/// Turns burn-store's result into a [`LoadReport`], strictly. `optional` is a module-path
/// prefix whose tensors may be absent all together (the text tower of a checkpoint without
/// it): then they are not counted as missing; some present and some absent is still an error.
fn report(
    path: &Path,
    mut r: ApplyResult,
    optional: Option<&str>,
) -> Result<LoadReport, WeightsError> {
    if let Some(p) = optional
        && !r.applied.iter().any(|a| a.starts_with(p))
    {
        r.missing.retain(|(m, _)| !m.starts_with(p));
    }
    if !r.errors.is_empty() || !r.missing.is_empty() {
        let mut parts = Vec::new();
        if !r.missing.is_empty() {
            let names: Vec<&str> = r.missing.iter().take(5).map(|(p, _)| p.as_str()).collect();
            parts.push(format!(
                "{} tensors missing (e.g. {})",
                r.missing.len(),
                names.join(", ")
            ));
        }
        if !r.errors.is_empty() {
            let errs: Vec<String> = r.errors.iter().take(5).map(|e| format!("{e:?}")).collect();
            parts.push(format!(
                "{} tensors do not fit ({})",
                r.errors.len(),
                errs.join("; ")
            ));
        }
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            detail: parts.join("; "),
        });
    }
    // burn-store lists a norm's PyTorch `weight`/`bias` as unused even when it applied them as
    // `gamma`/`beta` through the adapter's alternative names: those are not unused.
    let applied: std::collections::HashSet<&str> = r.applied.iter().map(String::as_str).collect();
    let renamed = |k: &str| {
        let alt = k
            .strip_suffix(".weight")
            .map(|p| format!("{p}.gamma"))
            .or_else(|| k.strip_suffix(".bias").map(|p| format!("{p}.beta")));
        alt.is_some_and(|a| applied.contains(a.as_str()))
    };
    let unused: Vec<String> = r.unused.iter().filter(|k| !renamed(k)).cloned().collect();
    Ok(LoadReport {
        applied: r.applied,
        unused,
        missing: Vec::new(),
        ignored: Vec::new(),
    })
}

/// Checkpoint key → module path for the whole model (image encoder, prompt encoder, mask
/// decoder), SEGVOL.md §11.2–11.4. Regexes applied in order.
pub const SEGVOL_REMAPS: [(&str, &str); 7] = [
    // HF / challenge `model.`, SegVol_v1 `module.`.
    (r"^(model|module)\.", ""),
    // MONAI's nn.Sequential(Rearrange, Linear) → our single Linear.
    (
        r"^image_encoder\.patch_embedding\.patch_embeddings\.1\.",
        "image_encoder.patch_embedding.patch_embeddings.",
    ),
    // MONAI's MLPBlock is flattened into the ViT block (the decoder's `mlp` stays).
    (r"^image_encoder\.(blocks\.\d+)\.mlp\.", "image_encoder.$1."),
    // The upscaling nn.Sequential (indices 2 and 4 are parameter-free GELUs).
    (
        r"^mask_decoder\.output_upscaling\.0\.",
        "mask_decoder.up_conv1.",
    ),
    (
        r"^mask_decoder\.output_upscaling\.1\.",
        "mask_decoder.up_norm.",
    ),
    (
        r"^mask_decoder\.output_upscaling\.3\.",
        "mask_decoder.up_conv2.",
    ),
    CLIP_TEXT_MODEL_LEVEL,
];

/// Checkpoint tensors left out on purpose (SEGVOL.md §11.2): the dead 2-D mask branch and
/// CLIP's int64 `position_ids`.
pub const IGNORED_ON_PURPOSE: [&str; 2] = ["mask_downscaling.", "position_ids"];

/// Checkpoint key → module path for the text tower (SEGVOL.md §7, §11.2): the `model.` /
/// `module.` prefix goes; transformers 5.x's names, which drop CLIP's `text_model.` level, get
/// it back. `dim_align` and everything else keep their names.
pub const TEXT_REMAPS: [(&str, &str); 2] = [(r"^(model|module)\.", ""), CLIP_TEXT_MODEL_LEVEL];

/// transformers 5.x's CLIP names drop the `text_model.` level the official checkpoint has:
/// put it back (in [`SEGVOL_REMAPS`] and [`TEXT_REMAPS`]).
const CLIP_TEXT_MODEL_LEVEL: (&str, &str) = (
    r"^text_encoder\.clip_text_model\.(embeddings|encoder|final_layer_norm)\.",
    "text_encoder.clip_text_model.text_model.$1.",
);

/// The text tower under its checkpoint name, so its paths are the checkpoint's keys.
#[derive(burn::module::Module, Debug)]
struct TextHolder<B: Backend> {
    text_encoder: TextEncoder<B>,
}

/// Loads SegVol's text tower (CLIP + `dim_align`) of shape `config` from a checkpoint in any of
/// the formats [`load_segvol`] takes, strictly: every tower tensor must be there with its shape.
/// The checkpoint's other tensors are reported as unused.
///
/// # Errors
/// [`WeightsError`] naming the file; [`WeightsError::Mismatch`] listing missing tower tensors.
pub fn load_text_encoder<B: Backend>(
    path: impl AsRef<Path>,
    config: &TextConfig,
    device: &B::Device,
) -> Result<(TextEncoder<B>, LoadReport), WeightsError> {
    let mut holder = TextHolder {
        text_encoder: TextEncoder::new(config, device),
    };
    let r = load_with(&mut holder, path.as_ref(), &TEXT_REMAPS, None)?;
    Ok((holder.text_encoder, r))
}

/// Applies `remaps` and loads `path` into `module`, trying a plain state dict, then
/// `{'model': …}` and `{'state_dict': …}` for PyTorch pickles.
fn load_with<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    remaps: &[(&str, &str)],
    optional: Option<&str>,
) -> Result<LoadReport, WeightsError> {
    if !path.exists() {
        return Err(WeightsError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let read_err = |detail: String| WeightsError::Read {
        path: path.to_path_buf(),
        detail,
    };
    match ext.as_str() {
        // Our fast format (`segvol convert`): burn's own layout, no key mapping.
        "bpk" => {
            let mut store = BurnpackStore::from_file(path)
                .auto_extension(false)
                .with_from_adapter(Cast(DType::F16, DType::F32))
                .allow_partial(true);
            let r = module.load_from(&mut store).map_err(|e| match &e {
                BurnpackError::ValidationError(m) => store_error(path, Some(m), String::new()),
                other => store_error(path, None, other.to_string()),
            })?;
            report(path, r, optional)
        }
        "safetensors" => {
            let mut store = remaps
                .iter()
                .fold(SafetensorsStore::from_file(path), |s, (from, to)| {
                    s.with_key_remapping(*from, *to)
                })
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(true);
            let r = module.load_from(&mut store).map_err(|e| match &e {
                SafetensorsStoreError::ValidationFailed(m) => {
                    store_error(path, Some(m), String::new())
                }
                other => store_error(path, None, other.to_string()),
            })?;
            report(path, r, optional)
        }
        "bin" | "pth" | "pt" | "ckpt" => {
            let mut last = None;
            for top in [None, Some("model"), Some("state_dict")] {
                let mut store = remaps
                    .iter()
                    .fold(PytorchStore::from_file(path), |s, (from, to)| {
                        s.with_key_remapping(*from, *to)
                    })
                    .allow_partial(true); // PytorchStore adapts PyTorch layouts itself
                if let Some(t) = top {
                    store = store.with_top_level_key(t);
                }
                match module.load_from(&mut store) {
                    Ok(r) if !r.applied.is_empty() => return report(path, r, optional),
                    Ok(r) => last = Some(Ok(r)),
                    Err(e) => last = Some(Err(e)),
                }
            }
            match last {
                Some(Err(PytorchStoreError::ValidationFailed(m))) => {
                    Err(store_error(path, Some(&m), String::new()))
                }
                Some(Err(e)) => Err(read_err(e.to_string())),
                Some(Ok(r)) => report(path, r, optional).and_then(|_| {
                    Err(WeightsError::Mismatch {
                        path: path.to_path_buf(),
                        detail: "no tensor of this model found".into(),
                    })
                }),
                None => Err(read_err("empty".into())),
            }
        }
        _ => Err(WeightsError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// Loads the image encoder's weights from a SegVol checkpoint (whole-model or encoder-only)
/// into `encoder`: strict on the encoder's own tensors; the rest of the checkpoint is reported
/// as unused.
///
/// # Errors
/// [`WeightsError`] naming the file: absent, unknown extension, unreadable, or not matching
/// the model.
pub fn load_image_encoder<B: Backend>(
    encoder: &mut ImageEncoder<B>,
    path: impl AsRef<Path>,
) -> Result<LoadReport, WeightsError> {
    load_with(encoder, path.as_ref(), &IMAGE_ENCODER_REMAPS, None)
}

/// Loads a whole SegVol checkpoint (HF `.bin`/`.safetensors`, `SegVol_v1.pth`, `.bpk`)
/// strictly: every model tensor must be present with its shape, and every checkpoint tensor
/// must be used except those in [`IGNORED_ON_PURPOSE`], which the report lists as `ignored`.
/// The CLIP text tower comes with it when the file has it (all of it: part of it is an error);
/// a file without it loads the image model alone.
///
/// # Errors
/// [`WeightsError`] naming the file; [`WeightsError::Mismatch`] also for unexpected tensors
/// (e.g. the GRU blocks of a corrector checkpoint).
pub fn load_segvol<B: Backend>(
    model: &mut SegVol<B>,
    path: impl AsRef<Path>,
) -> Result<LoadReport, WeightsError> {
    let path = path.as_ref();
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mpk"))
    {
        return load_checkpoint_mpk(model, path);
    }
    model.set_weights_name(&path.display().to_string());
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bpk"))
    {
        check_stored_config(model, stored_config(path)?, path)?;
    }
    // One pass over the file: the tower is offered with the rest (its parameters are
    // initialised lazily, so nothing is allocated for it unless loaded) and dropped again when
    // the file has none of its tensors.
    if let Some(device) = burn::module::Module::devices(model).into_iter().next() {
        let config = TextConfig::clip_b32(model.hidden_size());
        model.set_text_encoder(Some(TextEncoder::new(&config, &device)));
    }
    let mut r = load_with(model, path, &SEGVOL_REMAPS, Some("text_encoder."))?;
    if !r.applied.iter().any(|a| a.starts_with("text_encoder.")) {
        model.set_text_encoder(None);
    }
    let (ignored, unexpected): (Vec<String>, Vec<String>) = r
        .unused
        .drain(..)
        .partition(|k| IGNORED_ON_PURPOSE.iter().any(|p| k.contains(p)));
    if !unexpected.is_empty() {
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            detail: format!(
                "{} unexpected tensors (e.g. {})",
                unexpected.len(),
                unexpected
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    r.ignored = ignored;
    Ok(r)
}

/// The configuration a `.bpk` was saved with (its `segvol_config` metadata, written by
/// [`save_burnpack`]), or `None` for a file without one (burnpacks of other tools).
///
/// burn-store reads this metadata but keeps it private; the format is public: a 10-byte header
/// (magic `BURN`, u16 version, u32 metadata length, little-endian), then CBOR with a
/// `metadata` map of strings.
///
/// # Errors
/// [`WeightsError::Read`] when the header or the metadata cannot be read.
pub fn stored_config(path: &Path) -> Result<Option<crate::SegVolConfig>, WeightsError> {
    let f = std::fs::File::open(path).map_err(|e| WeightsError::Read {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    read_stored_config(std::io::BufReader::new(f), path)
}

/// [`stored_config`] of burnpack bytes in memory (e.g. weights embedded in the binary); `name`
/// is what errors call them.
///
/// # Errors
/// [`WeightsError::Read`] when the header or the metadata cannot be read.
pub fn stored_config_bytes(
    bytes: &[u8],
    name: &str,
) -> Result<Option<crate::SegVolConfig>, WeightsError> {
    read_stored_config(bytes, Path::new(name))
}

fn read_stored_config(
    mut r: impl std::io::Read,
    path: &Path,
) -> Result<Option<crate::SegVolConfig>, WeightsError> {
    let err = |detail: String| WeightsError::Read {
        path: path.to_path_buf(),
        detail,
    };
    let mut head = [0u8; 10];
    r.read_exact(&mut head)
        .map_err(|e| err(format!("header: {e}")))?;
    if &head[..4] != b"NRUB" {
        return Err(err("not a burnpack (.bpk) file".into()));
    }
    let len = u32::from_le_bytes([head[6], head[7], head[8], head[9]]) as usize;
    // burn-store's own limit on the metadata section.
    if len > 100 * 1024 * 1024 {
        return Err(err(format!("metadata of {len} bytes")));
    }
    let mut meta = vec![0u8; len];
    r.read_exact(&mut meta)
        .map_err(|e| err(format!("metadata: {e}")))?;
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        metadata: std::collections::BTreeMap<String, String>,
    }
    let m: Meta =
        ciborium::de::from_reader(&meta[..]).map_err(|e| err(format!("metadata: {e}")))?;
    let Some(json) = m.metadata.get("segvol_config") else {
        return Ok(None);
    };
    // Flags added after a file was written are absent from it and mean "off" (burn's config
    // derive applies defaults in `new`, not when deserialising).
    let mut value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| err(format!("stored config: {e}")))?;
    if let Some(obj) = value.as_object_mut() {
        for flag in [
            "aligned_prompt_coords",
            "dense_prompts",
            "mask_prompt",
            "mask_prompt_image",
            "box_mask_prompt",
        ] {
            obj.entry(flag).or_insert(serde_json::Value::Bool(false));
        }
    }
    <crate::SegVolConfig as burn::config::Config>::load_binary(value.to_string().as_bytes())
        .map(Some)
        .map_err(|e| err(format!("stored config: {e}")))
}

/// Refuses a `.bpk` saved for another configuration than `model`'s: tensor shapes alone miss
/// flags that change what the weights mean (`aligned_prompt_coords`, `dense_prompts`, eps).
fn check_stored_config<B: Backend>(
    model: &SegVol<B>,
    stored: Option<crate::SegVolConfig>,
    path: &Path,
) -> Result<(), WeightsError> {
    // `box_mask_prompt` has no weights of its own: any file loads with it on or off.
    if let Some(stored) = stored
        && stored
            .clone()
            .with_box_mask_prompt(model.config().box_mask_prompt)
            != *model.config()
    {
        let m = model.config();
        let mut diff = Vec::new();
        macro_rules! fields {
            ($($f:ident),*) => {$(
                if stored.$f != m.$f {
                    diff.push(format!(
                        "{} {:?} in the file, {:?} in the model",
                        stringify!($f), stored.$f, m.$f
                    ));
                }
            )*};
        }
        fields!(
            image_size,
            patch_size,
            hidden_size,
            mlp_dim,
            num_layers,
            num_heads,
            decoder_depth,
            decoder_heads,
            decoder_mlp_dim,
            iou_head_hidden,
            layer_norm_eps,
            aligned_prompt_coords,
            dense_prompts,
            mask_prompt,
            mask_prompt_image
        );
        if diff.is_empty() {
            diff.push(format!("{stored:?} in the file, {m:?} in the model"));
        }
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            detail: format!("saved for another model configuration: {}", diff.join("; ")),
        });
    }
    Ok(())
}

/// Casts every float tensor of one dtype to another, lazily (burn-store's own
/// `HalfPrecisionAdapter` converts only a list of known module types, and SegVol keeps weights
/// in its own modules too: position embeddings, the full-tensor LayerNorm). On load it turns
/// the f16 storage of the shipped model back into the f32 the backends compute in; f32 files
/// pass through untouched.
#[derive(Debug, Clone, Copy)]
struct Cast(DType, DType);

impl ModuleAdapter for Cast {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        if snapshot.dtype != self.0 {
            return snapshot.clone();
        }
        let to = self.1;
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            std::rc::Rc::new(move || Ok(data()?.convert_dtype(to))),
            to,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

/// Loads SegVol weights from burnpack bytes in memory (e.g. a model embedded in the binary
/// with `include_bytes!`), strictly, with f16 storage turned into f32.
///
/// # Errors
/// [`WeightsError`] naming `name` when the bytes are not a burnpack of this model.
pub fn load_segvol_static<B: Backend>(
    model: &mut SegVol<B>,
    bytes: &'static [u8],
    name: &str,
) -> Result<LoadReport, WeightsError> {
    let path = Path::new(name);
    model.set_weights_name(name);
    check_stored_config(model, read_stored_config(bytes, path)?, path)?;
    // Not zero-copy: `include_bytes!` data has no alignment guarantee, and the f16 → f32 cast
    // copies every tensor anyway.
    let mut store = BurnpackStore::from_static(bytes)
        .zero_copy(false)
        .with_from_adapter(Cast(DType::F16, DType::F32))
        .allow_partial(true);
    let r = model.load_from(&mut store).map_err(|e| match &e {
        BurnpackError::ValidationError(m) => store_error(path, Some(m), String::new()),
        other => store_error(path, None, other.to_string()),
    })?;
    let r = report(path, r, None)?;
    if !r.unused.is_empty() {
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            detail: format!("{} unexpected tensors", r.unused.len()),
        });
    }
    Ok(r)
}

/// [`save_burnpack`] with every float tensor stored as f16 (half the size; what segvol-rs
/// ships). Loading casts back to f32.
///
/// # Errors
/// As [`save_burnpack`].
pub fn save_burnpack_f16<B: Backend>(
    model: &SegVol<B>,
    config: &crate::SegVolConfig,
    source: &str,
    path: impl AsRef<Path>,
) -> Result<(), WeightsError> {
    save_burnpack_as(model, config, source, path.as_ref(), true)
}

/// A `segvol train` checkpoint (`RUN/<stage>/checkpoint/model.mpk`, burn's named
/// MessagePack record), so a run can be evaluated before it ends.
fn load_checkpoint_mpk<B: Backend>(
    model: &mut SegVol<B>,
    path: &Path,
) -> Result<LoadReport, WeightsError> {
    use burn::module::Module;
    use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
    if !path.exists() {
        return Err(WeightsError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let Some(device) = model.devices().into_iter().next() else {
        return Err(WeightsError::Read {
            path: path.to_path_buf(),
            detail: "the model has no parameters".into(),
        });
    };
    let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let loaded =
        model
            .clone()
            .load_file(path, &rec, &device)
            .map_err(|e| WeightsError::Mismatch {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
    *model = loaded;
    Ok(LoadReport {
        applied: vec!["(whole record)".into()],
        unused: Vec::new(),
        missing: Vec::new(),
        ignored: Vec::new(),
    })
}

/// Saves a loaded model in our fast format: burn's burnpack (`.bpk`), in burn's own tensor
/// layout, so loading needs no key mapping, transposes or pickle parsing. The model's config
/// (JSON) and `source` (e.g. the checkpoint it came from) go into the file's metadata. Written
/// to a temporary file beside `path`, then renamed.
///
/// # Errors
/// [`WeightsError::Read`] naming the file when it cannot be written.
pub fn save_burnpack<B: Backend>(
    model: &SegVol<B>,
    config: &crate::SegVolConfig,
    source: &str,
    path: impl AsRef<Path>,
) -> Result<(), WeightsError> {
    save_burnpack_as(model, config, source, path.as_ref(), false)
}

fn save_burnpack_as<B: Backend>(
    model: &SegVol<B>,
    config: &crate::SegVolConfig,
    source: &str,
    path: &Path,
    half: bool,
) -> Result<(), WeightsError> {
    let fail = |detail: String| WeightsError::Read {
        path: path.to_path_buf(),
        detail,
    };
    segvol_atomic::write_with(
        path,
        ".bpk",
        |tmp| {
            let mut store = BurnpackStore::from_file(tmp)
                .auto_extension(false)
                .overwrite(true)
                .metadata("segvol_config", config.to_string())
                .metadata("segvol_source", source);
            if half {
                store = store.with_to_adapter(Cast(DType::F32, DType::F16));
            }
            model
                .save_into(&mut store)
                .map_err(|e| fail(format!("cannot write: {e}")))
        },
        |e| fail(format!("cannot write: {e}")),
    )
}
