//! PyTorch `nn.GRU` weights into burn's [`Gru`]: PyTorch packs the three gates as rows
//! `(r, z, n)` of `weight_ih_l0 [3H, I]`, `weight_hh_l0 [3H, H]` and the two biases; burn keeps
//! one gate controller per gate, each with an input and a hidden `Linear` stored `[in, out]`.
//! burn-store has no mapping for this, so the split and transpose are written here, once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::gru::{Gru, GruConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use burn_store::pytorch::PytorchReader;

/// The four tensors of one PyTorch GRU layer, row-major, with their sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct PytorchGru {
    /// Input size I.
    pub d_input: usize,
    /// Hidden size H.
    pub d_hidden: usize,
    /// `weight_ih_l0`, `[3H, I]`.
    pub weight_ih: Vec<f32>,
    /// `weight_hh_l0`, `[3H, H]`.
    pub weight_hh: Vec<f32>,
    /// `bias_ih_l0`, `[3H]`.
    pub bias_ih: Vec<f32>,
    /// `bias_hh_l0`, `[3H]`.
    pub bias_hh: Vec<f32>,
}

/// Why GRU weights could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GruLoadError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a readable checkpoint (safetensors or PyTorch), or not the expected model.
    #[error("{}: {detail}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        detail: String,
    },
    /// A tensor is missing, not float32, or of the wrong shape.
    #[error("{}: `{key}`: {detail}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        key: String,
        /// What is wrong.
        detail: String,
    },
}

/// All float tensors of a checkpoint, by key: row-major f32 values and their shape.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// The file (for error messages).
    pub path: PathBuf,
    /// Key → (shape, values).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// String metadata (safetensors `__metadata__`; empty for PyTorch files).
    pub metadata: HashMap<String, String>,
}

/// Reads every tensor of a `.safetensors` file or a PyTorch `.pth` / `.pt` / `.bin` file
/// (zip or legacy pickle, read by burn-store's safe reader; nested dicts give dotted keys, e.g.
/// `model.gru.weight_ih_l0`). The format is sniffed from the bytes, not the extension. Float
/// tensors of any width are converted to f32.
///
/// # Errors
/// [`GruLoadError`] naming the file: missing, unreadable, or not a checkpoint.
pub fn read_checkpoint(path: impl AsRef<Path>) -> Result<Checkpoint, GruLoadError> {
    let path = path.as_ref();
    let format = |detail: String| GruLoadError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|source| GruLoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(ck) = safetensors_checkpoint(path, &bytes)? {
        return Ok(ck);
    }
    let is_pytorch = bytes.starts_with(b"PK") || bytes.first() == Some(&0x80);
    if !is_pytorch {
        return Err(format(
            "neither a safetensors file nor a PyTorch checkpoint (zip or pickle)".into(),
        ));
    }
    drop(bytes);
    let mut ck = Checkpoint {
        path: path.to_path_buf(),
        ..Checkpoint::default()
    };
    // Nested dicts ({'model': {...}}) come back flattened with dotted keys; callers look the
    // keys up under their known prefixes.
    let reader = PytorchReader::new(path)
        .map_err(|e| format(format!("not a readable PyTorch checkpoint: {e}")))?;
    for (key, snap) in reader.into_tensors() {
        let data = snap.to_data().map_err(|e| GruLoadError::Tensor {
            path: path.to_path_buf(),
            key: key.clone(),
            detail: e.to_string(),
        })?;
        let shape = data.shape.to_vec();
        let v = data
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| GruLoadError::Tensor {
                path: path.to_path_buf(),
                key: key.clone(),
                detail: format!("{e:?}"),
            })?;
        ck.tensors.insert(key, (shape, v));
    }
    Ok(ck)
}

/// A checkpoint from safetensors bytes (`None` when the bytes are not safetensors); `path`
/// only names it in errors.
///
/// # Errors
/// [`GruLoadError`] for a broken file or a tensor that is not f32.
pub fn safetensors_checkpoint(
    path: &Path,
    bytes: &[u8],
) -> Result<Option<Checkpoint>, GruLoadError> {
    let format = |detail: String| GruLoadError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let mut ck = Checkpoint {
        path: path.to_path_buf(),
        ..Checkpoint::default()
    };
    // safetensors: an 8-byte little-endian header length, then a JSON object.
    if !(bytes.len() > 8 && bytes[8] == b'{') {
        return Ok(None);
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| format(format!("not a valid safetensors file: {e}")))?;
    if let Some(m) = meta.metadata() {
        ck.metadata = m.clone();
    }
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format(format!("not a valid safetensors file: {e}")))?;
    for (key, t) in st.tensors() {
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(GruLoadError::Tensor {
                path: path.to_path_buf(),
                key,
                detail: format!("dtype {:?}, expected F32", t.dtype()),
            });
        }
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        ck.tensors.insert(key, (t.shape().to_vec(), v));
    }
    Ok(Some(ck))
}

impl Checkpoint {
    fn bad(&self, key: &str, detail: String) -> GruLoadError {
        GruLoadError::Tensor {
            path: self.path.clone(),
            key: key.to_string(),
            detail,
        }
    }

    /// The tensor `key`, or an error naming it.
    ///
    /// # Errors
    /// [`GruLoadError::Tensor`] when absent.
    pub fn get(&self, key: &str) -> Result<(&[usize], &[f32]), GruLoadError> {
        self.tensors
            .get(key)
            .map(|(s, v)| (s.as_slice(), v.as_slice()))
            .ok_or_else(|| self.bad(key, "missing".into()))
    }

    /// The tensor `key`, checked to have `shape`.
    ///
    /// # Errors
    /// [`GruLoadError::Tensor`] when absent or of another shape.
    pub fn get_shaped(&self, key: &str, shape: &[usize]) -> Result<&[f32], GruLoadError> {
        let (s, v) = self.get(key)?;
        if s != shape {
            return Err(self.bad(key, format!("shape {s:?}, expected {shape:?}")));
        }
        Ok(v)
    }

    /// The first of `prefixes` under which `key` exists (e.g. `""`, `"model."`).
    pub fn find_prefix<'p>(&self, prefixes: &[&'p str], key: &str) -> Option<&'p str> {
        prefixes
            .iter()
            .copied()
            .find(|p| self.tensors.contains_key(&format!("{p}{key}")))
    }

    /// The GRU layer `{prefix}weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, with
    /// its sizes checked against each other.
    ///
    /// # Errors
    /// [`GruLoadError::Tensor`] naming the missing or misshapen tensor.
    pub fn gru(&self, prefix: &str) -> Result<PytorchGru, GruLoadError> {
        let key = |n: &str| format!("{prefix}{n}");
        let (s_ih, weight_ih) = self.get(&key("weight_ih_l0"))?;
        if s_ih.len() != 2 || s_ih[0] % 3 != 0 || s_ih[0] == 0 {
            return Err(self.bad(
                &key("weight_ih_l0"),
                format!("shape {s_ih:?} is not [3H, I]"),
            ));
        }
        let (h3, d_input) = (s_ih[0], s_ih[1]);
        let d_hidden = h3 / 3;
        Ok(PytorchGru {
            d_input,
            d_hidden,
            weight_ih: weight_ih.to_vec(),
            weight_hh: self
                .get_shaped(&key("weight_hh_l0"), &[h3, d_hidden])?
                .to_vec(),
            bias_ih: self.get_shaped(&key("bias_ih_l0"), &[h3])?.to_vec(),
            bias_hh: self.get_shaped(&key("bias_hh_l0"), &[h3])?.to_vec(),
        })
    }

    /// A PyTorch `nn.Linear` (`{prefix}weight [out, in]`, `{prefix}bias [out]`) as a burn
    /// `Linear` (weight stored `[in, out]`), checked against the expected sizes.
    ///
    /// # Errors
    /// [`GruLoadError::Tensor`] naming the missing or misshapen tensor.
    pub fn linear<B: Backend>(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Result<Linear<B>, GruLoadError> {
        let w = self.get_shaped(&format!("{prefix}weight"), &[d_out, d_in])?;
        let b = self.get_shaped(&format!("{prefix}bias"), &[d_out])?;
        let mut l = LinearConfig::new(d_in, d_out).init(device);
        let weight = Tensor::<B, 2>::from_data(TensorData::new(w.to_vec(), [d_out, d_in]), device)
            .transpose();
        set_linear(&mut l, weight, b, device);
        Ok(l)
    }
}

/// Reads `{prefix}weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0` from a safetensors
/// or PyTorch file, checking the shapes agree.
///
/// # Errors
/// [`GruLoadError`] naming the file and tensor.
pub fn read_safetensors(path: impl AsRef<Path>, prefix: &str) -> Result<PytorchGru, GruLoadError> {
    read_checkpoint(path)?.gru(prefix)
}

/// Rows `[g·H, (g+1)·H)` of a row-major `[3H, cols]` matrix, transposed to burn's `[cols, H]`.
fn gate_weight<B: Backend>(
    w: &[f32],
    g: usize,
    h: usize,
    cols: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let rows = &w[g * h * cols..(g + 1) * h * cols];
    Tensor::<B, 2>::from_data(TensorData::new(rows.to_vec(), [h, cols]), device).transpose()
}

fn set_linear<B: Backend>(
    l: &mut Linear<B>,
    weight: Tensor<B, 2>,
    bias: &[f32],
    device: &B::Device,
) {
    l.weight = Param::from_tensor(weight);
    l.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias.to_vec(), [bias.len()]),
        device,
    )));
}

impl PytorchGru {
    /// A burn [`Gru`] computing exactly PyTorch's `nn.GRU` with these weights
    /// (`reset_after = true`: `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`).
    pub fn to_burn<B: Backend>(&self, device: &B::Device) -> Gru<B> {
        let (h, i) = (self.d_hidden, self.d_input);
        let mut gru = GruConfig::new(i, h, true)
            .with_reset_after(true)
            .init(device);
        // PyTorch gate order in the packed rows: reset (0), update (1), new (2).
        for (g, gate) in [
            (0, &mut gru.reset_gate),
            (1, &mut gru.update_gate),
            (2, &mut gru.new_gate),
        ] {
            set_linear(
                &mut gate.input_transform,
                gate_weight(&self.weight_ih, g, h, i, device),
                &self.bias_ih[g * h..(g + 1) * h],
                device,
            );
            set_linear(
                &mut gate.hidden_transform,
                gate_weight(&self.weight_hh, g, h, h, device),
                &self.bias_hh[g * h..(g + 1) * h],
                device,
            );
        }
        gru
    }
}
