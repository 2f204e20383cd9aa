#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod file;
pub mod model;
pub mod pytorch;
pub mod seed;
pub mod session;
pub mod training;
pub mod writeback;

pub use file::{load_corrector, load_corrector_bytes, save_corrector};
pub use model::{GruCorrector, RoundOutput};
pub use pytorch::GruLoadError;
pub use session::{CorrectError, CorrectionSession, Flip, RoundReport};

/// Hyper-parameters of the corrector (GRU_CORRECTION.md D6–D7, §5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GruCorrectorConfig {
    /// Rows per sampled set (K); the GRU input is `K·8` per token.
    pub k: usize,
    /// GRU hidden size (default 256).
    pub hidden: usize,
    /// Whether the coordinate-refinement head is built.
    pub coord_head: bool,
    /// Largest coordinate shift in voxels (`tanh · max_shift`, default 1).
    pub max_shift: f32,
    /// Gaussian splat radius of the write-back in voxels (0 = single voxel).
    pub splat_radius: usize,
}

impl Default for GruCorrectorConfig {
    fn default() -> Self {
        GruCorrectorConfig {
            k: 200,
            hidden: 256,
            coord_head: true,
            max_shift: 1.0,
            splat_radius: 0,
        }
    }
}

impl GruCorrectorConfig {
    /// GRU parameters, PyTorch's count: `3·(8K·H + H² + 2H)`.
    pub fn gru_params(&self) -> usize {
        let (i, h) = (8 * self.k, self.hidden);
        3 * (i * h + h * h + 2 * h)
    }

    /// Delta-logit head `Linear(H + 6K → 2K)`: `(H + 6K)·2K + 2K`.
    pub fn delta_head_params(&self) -> usize {
        (self.hidden + 6 * self.k) * 2 * self.k + 2 * self.k
    }

    /// Coordinate head `Linear(H + 6K → 6K)`, 0 when disabled.
    pub fn coord_head_params(&self) -> usize {
        if self.coord_head {
            (self.hidden + 6 * self.k) * 6 * self.k + 6 * self.k
        } else {
            0
        }
    }

    /// All parameters.
    ///
    /// # Examples
    /// ```
    /// use segvol_gru::GruCorrectorConfig;
    /// // GRU_CORRECTION.md §5: 3,758,144 with the coordinate head, 2,009,744 without.
    /// let c = GruCorrectorConfig::default();
    /// assert_eq!(c.num_params(), 3_758_144);
    /// assert_eq!(GruCorrectorConfig { coord_head: false, ..c }.num_params(), 2_009_744);
    /// ```
    pub fn num_params(&self) -> usize {
        self.gru_params() + self.delta_head_params() + self.coord_head_params()
    }
}
