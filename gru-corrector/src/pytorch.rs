//! PyTorch `nn.GRU` weights into burn's [`Gru`]: PyTorch packs the three gates as rows
//! `(r, z, n)` of `weight_ih_l0 [3H, I]`, `weight_hh_l0 [3H, H]` and the two biases; burn keeps
//! one gate controller per gate, each with an input and a hidden `Linear` stored `[in, out]`.
//! burn-store has no mapping for this, so the split and transpose are written here, once.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::Linear;
use burn::nn::gru::{Gru, GruConfig};
use burn::tensor::{Tensor, TensorData, backend::Backend};

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
    /// Not a readable safetensors file.
    #[error("{}: not a safetensors file: {detail}", path.display())]
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

/// Reads `{prefix}weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0` from a safetensors
/// file (float32), checking the shapes agree.
///
/// # Errors
/// [`GruLoadError`] naming the file and tensor.
pub fn read_safetensors(path: impl AsRef<Path>, prefix: &str) -> Result<PytorchGru, GruLoadError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| GruLoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| GruLoadError::Format {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>), GruLoadError> {
        let key = format!("{prefix}{name}");
        let bad = |detail: String| GruLoadError::Tensor {
            path: path.to_path_buf(),
            key: key.clone(),
            detail,
        };
        let t = st.tensor(&key).map_err(|e| bad(e.to_string()))?;
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(bad(format!("dtype {:?}, expected F32", t.dtype())));
        }
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((t.shape().to_vec(), v))
    };
    let (s_ih, weight_ih) = get("weight_ih_l0")?;
    let (s_hh, weight_hh) = get("weight_hh_l0")?;
    let (s_bi, bias_ih) = get("bias_ih_l0")?;
    let (s_bh, bias_hh) = get("bias_hh_l0")?;
    let shape_err = |key: &str, detail: String| GruLoadError::Tensor {
        path: path.to_path_buf(),
        key: format!("{prefix}{key}"),
        detail,
    };
    if s_ih.len() != 2 || s_ih[0] % 3 != 0 {
        return Err(shape_err(
            "weight_ih_l0",
            format!("shape {s_ih:?} is not [3H, I]"),
        ));
    }
    let (h3, d_input) = (s_ih[0], s_ih[1]);
    let d_hidden = h3 / 3;
    if s_hh != [h3, d_hidden] || s_bi != [h3] || s_bh != [h3] {
        return Err(shape_err(
            "weight_hh_l0",
            format!("shapes {s_hh:?}, {s_bi:?}, {s_bh:?} do not fit H = {d_hidden}"),
        ));
    }
    Ok(PytorchGru {
        d_input,
        d_hidden,
        weight_ih,
        weight_hh,
        bias_ih,
        bias_hh,
    })
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
