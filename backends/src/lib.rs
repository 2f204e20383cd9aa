#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use std::fmt;
use std::str::FromStr;

pub use burn::tensor::backend::Backend;

/// burn's `ndarray` CPU backend (f32 floats), the backend named in the project design.
#[cfg(feature = "ndarray")]
pub type NdArray = burn_ndarray::NdArray<f32>;
/// burn's `flex` CPU backend: pure Rust, SIMD + rayon, f32 floats.
#[cfg(feature = "flex")]
pub type Flex = burn_flex::Flex;
/// burn's `wgpu` backend (Vulkan / Metal / DX12 / WebGPU, or Mesa's lavapipe on CPU), f32 floats.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn_wgpu::Wgpu<f32, i32>;
/// burn's `cuda` backend (kernels compiled at run time with NVRTC), f32 floats.
#[cfg(feature = "cuda")]
pub type Cuda = burn_cuda::Cuda<f32, i32>;

/// Every backend segvol-rs knows about, compiled or not, with its cargo feature.
///
/// `(name on the command line, cargo feature, compiled into this build)`.
pub const ALL_BACKENDS: [(&str, &str, bool); 4] = [
    ("ndarray", "ndarray", cfg!(feature = "ndarray")),
    ("flex", "flex", cfg!(feature = "flex")),
    ("wgpu", "wgpu", cfg!(feature = "wgpu")),
    ("cuda", "cuda", cfg!(feature = "cuda")),
];

/// A burn backend chosen at run time (for `--backend`); one variant per compiled feature.
///
/// Parse it from the names `ndarray`, `flex`, `wgpu` and `cuda`; a GPU backend may carry a
/// device index (`cuda:1`, `wgpu:0`). Asking for a backend this build lacks is an error that
/// names the cargo feature to rebuild with.
///
/// # Examples
/// ```
/// use segvol_backends::BackendKind;
/// let kind: BackendKind = "flex".parse()?;
/// assert_eq!(kind.to_string(), "flex");
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// burn-ndarray on the CPU.
    #[cfg(feature = "ndarray")]
    NdArray,
    /// burn-flex on the CPU.
    #[cfg(feature = "flex")]
    Flex,
    /// burn-wgpu; `None` picks the default adapter, `Some(i)` the i-th discrete GPU.
    #[cfg(feature = "wgpu")]
    Wgpu(Option<usize>),
    /// burn-cuda on the GPU with this index.
    #[cfg(feature = "cuda")]
    Cuda(usize),
}

/// Errors from choosing a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend exists but this binary was built without its cargo feature.
    #[error(
        "backend `{name}` is not compiled into this build (compiled: {compiled}); rebuild with `--features {feature}`"
    )]
    NotCompiled {
        /// The name that was asked for.
        name: String,
        /// The cargo feature that enables it.
        feature: &'static str,
        /// The backends this build has, comma separated.
        compiled: String,
    },
    /// No backend has this name.
    #[error("unknown backend `{name}`; expected one of: ndarray, flex, wgpu, cuda")]
    Unknown {
        /// The name that was asked for.
        name: String,
    },
    /// The device index after `:` is not a number, or the backend takes none.
    #[error("bad device in `{spec}`: {reason}")]
    BadDevice {
        /// The whole specification.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// This build has no backend at all.
    #[error(
        "this build has no burn backend; rebuild with `--features ndarray` or `--features flex`"
    )]
    NoneCompiled,
}

impl BackendKind {
    /// The backends compiled into this build, CPU first, in the order of [`ALL_BACKENDS`].
    pub fn compiled() -> Vec<BackendKind> {
        ALL_BACKENDS
            .iter()
            .filter(|(_, _, compiled)| *compiled)
            .filter_map(|(name, _, _)| name.parse().ok())
            .collect()
    }

    /// The default backend: `flex` when compiled (measured faster than `ndarray` on a ViT-B
    /// block, see the crate README), else the first compiled one.
    ///
    /// # Errors
    /// [`BackendError::NoneCompiled`] when the build has no backend feature.
    pub fn default_cpu() -> Result<BackendKind, BackendError> {
        #[cfg(feature = "flex")]
        {
            Ok(BackendKind::Flex)
        }
        #[cfg(not(feature = "flex"))]
        {
            Self::compiled()
                .into_iter()
                .next()
                .ok_or(BackendError::NoneCompiled)
        }
    }

    /// The backend's name as accepted by [`FromStr`] (without any device index).
    pub fn name(&self) -> &'static str {
        match *self {
            #[cfg(feature = "ndarray")]
            BackendKind::NdArray => "ndarray",
            #[cfg(feature = "flex")]
            BackendKind::Flex => "flex",
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu(_) => "wgpu",
            #[cfg(feature = "cuda")]
            BackendKind::Cuda(_) => "cuda",
        }
    }

    /// Whether this backend runs on the CPU of this machine.
    pub fn is_cpu(&self) -> bool {
        match *self {
            #[cfg(feature = "ndarray")]
            BackendKind::NdArray => true,
            #[cfg(feature = "flex")]
            BackendKind::Flex => true,
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu(_) => false,
            #[cfg(feature = "cuda")]
            BackendKind::Cuda(_) => false,
        }
    }
}

fn compiled_list() -> String {
    let names: Vec<&str> = ALL_BACKENDS
        .iter()
        .filter(|(_, _, on)| *on)
        .map(|(n, _, _)| *n)
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec_trim = spec.trim();
        let (name, index) = match spec_trim.split_once(':') {
            Some((n, i)) => (n, Some(i)),
            None => (spec_trim, None),
        };
        let name = name.to_ascii_lowercase();
        let Some(&(_, feature, compiled)) = ALL_BACKENDS.iter().find(|(n, _, _)| *n == name) else {
            return Err(BackendError::Unknown {
                name: spec_trim.to_string(),
            });
        };
        if !compiled {
            return Err(BackendError::NotCompiled {
                name,
                feature,
                compiled: compiled_list(),
            });
        }
        let index: Option<usize> = match index {
            None => None,
            Some(i) => Some(i.parse().map_err(|_| BackendError::BadDevice {
                spec: spec_trim.to_string(),
                reason: "the device index must be a non-negative integer",
            })?),
        };
        let cpu_with_index = || BackendError::BadDevice {
            spec: spec_trim.to_string(),
            reason: "CPU backends take no device index",
        };
        // `compiled` is true here, so exactly one arm below is reachable per name.
        match name.as_str() {
            #[cfg(feature = "ndarray")]
            "ndarray" => index.map_or(Ok(BackendKind::NdArray), |_| Err(cpu_with_index())),
            #[cfg(feature = "flex")]
            "flex" => index.map_or(Ok(BackendKind::Flex), |_| Err(cpu_with_index())),
            #[cfg(feature = "wgpu")]
            "wgpu" => Ok(BackendKind::Wgpu(index)),
            #[cfg(feature = "cuda")]
            "cuda" => Ok(BackendKind::Cuda(index.unwrap_or(0))),
            _ => {
                let _ = cpu_with_index;
                Err(BackendError::Unknown {
                    name: spec_trim.to_string(),
                })
            }
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda(i) if i != 0 => write!(f, "cuda:{i}"),
            _ => f.write_str(self.name()),
        }
    }
}

/// A piece of backend-generic work: implement `run` once, call it on any backend with
/// [`dispatch`]. (A trait rather than a closure because Rust closures cannot be generic.)
///
/// # Examples
/// ```
/// use burn::tensor::{ElementConversion, Tensor};
/// use segvol_backends::{dispatch, Backend, BackendKind, BackendTask};
///
/// struct SumOfOnes(usize);
/// impl BackendTask for SumOfOnes {
///     type Output = f32;
///     fn run<B: Backend>(self, device: &B::Device) -> f32 {
///         Tensor::<B, 1>::ones([self.0], device).sum().into_scalar().elem()
///     }
/// }
///
/// let kind = BackendKind::default_cpu()?;
/// assert_eq!(dispatch(kind, SumOfOnes(10)), 10.0);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub trait BackendTask {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B`, on `device`.
    fn run<B: Backend>(self, device: &B::Device) -> Self::Output;
}

/// Runs `task` on the backend `kind` names, with that backend's device for it.
///
/// This is the only place that turns a run-time [`BackendKind`] into a static backend type.
pub fn dispatch<T: BackendTask>(kind: BackendKind, task: T) -> T::Output {
    match kind {
        #[cfg(feature = "ndarray")]
        BackendKind::NdArray => task.run::<NdArray>(&burn_ndarray::NdArrayDevice::Cpu),
        #[cfg(feature = "flex")]
        BackendKind::Flex => task.run::<Flex>(&burn_flex::FlexDevice),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu(index) => {
            let device = match index {
                None => burn_wgpu::WgpuDevice::DefaultDevice,
                Some(i) => burn_wgpu::WgpuDevice::DiscreteGpu(i),
            };
            task.run::<Wgpu>(&device)
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda(index) => task.run::<Cuda>(&burn_cuda::CudaDevice::new(index)),
    }
}

/// A piece of training work on an autodiff backend (burn's `Autodiff<B>` over the chosen
/// backend); the counterpart of [`BackendTask`] for [`dispatch_autodiff`].
#[cfg(feature = "autodiff")]
pub trait AutodiffTask {
    /// What the work returns.
    type Output;
    /// Runs the work on autodiff backend `B`, on `device`.
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: &B::Device) -> Self::Output;
}

/// Runs `task` on `Autodiff<backend kind names>`: the same run-time choice as [`dispatch`],
/// for training.
#[cfg(feature = "autodiff")]
pub fn dispatch_autodiff<T: AutodiffTask>(kind: BackendKind, task: T) -> T::Output {
    use burn::backend::Autodiff;
    match kind {
        #[cfg(feature = "ndarray")]
        BackendKind::NdArray => task.run::<Autodiff<NdArray>>(&burn_ndarray::NdArrayDevice::Cpu),
        #[cfg(feature = "flex")]
        BackendKind::Flex => task.run::<Autodiff<Flex>>(&burn_flex::FlexDevice),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu(index) => {
            let device = match index {
                None => burn_wgpu::WgpuDevice::DefaultDevice,
                Some(i) => burn_wgpu::WgpuDevice::DiscreteGpu(i),
            };
            task.run::<Autodiff<Wgpu>>(&device)
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda(index) => task.run::<Autodiff<Cuda>>(&burn_cuda::CudaDevice::new(index)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;

    #[test]
    fn every_compiled_backend_round_trips_through_its_name() {
        for kind in BackendKind::compiled() {
            let parsed: BackendKind = kind.to_string().parse().unwrap();
            assert_eq!(parsed, kind);
        }
    }

    #[test]
    fn unknown_and_uncompiled_names_are_typed_errors() {
        assert!(matches!(
            "tpu".parse::<BackendKind>(),
            Err(BackendError::Unknown { .. })
        ));
        for (name, feature, compiled) in ALL_BACKENDS {
            let r = name.parse::<BackendKind>();
            if compiled {
                assert!(r.is_ok(), "{name}");
            } else {
                let err = r.unwrap_err();
                assert!(
                    err.to_string().contains(&format!("--features {feature}")),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn device_index_rules() {
        #[cfg(feature = "flex")]
        assert!(matches!(
            "flex:1".parse::<BackendKind>(),
            Err(BackendError::BadDevice { .. })
        ));
        #[cfg(feature = "cuda")]
        assert_eq!("cuda:2".parse::<BackendKind>(), Ok(BackendKind::Cuda(2)));
        #[cfg(feature = "cuda")]
        assert!(matches!(
            "cuda:x".parse::<BackendKind>(),
            Err(BackendError::BadDevice { .. })
        ));
        assert!("NdArray".parse::<BackendKind>().is_ok() || !cfg!(feature = "ndarray"));
    }

    /// 2x2 matmul, by hand: [[1,2],[3,4]] · [[5,6],[7,8]] = [[19,22],[43,50]].
    struct Matmul;
    impl BackendTask for Matmul {
        type Output = Vec<f32>;
        fn run<B: Backend>(self, device: &B::Device) -> Vec<f32> {
            let a = Tensor::<B, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], device);
            let b = Tensor::<B, 2>::from_floats([[5.0, 6.0], [7.0, 8.0]], device);
            a.matmul(b).into_data().to_vec().unwrap()
        }
    }

    #[test]
    fn dispatch_runs_on_every_cpu_backend() {
        for kind in BackendKind::compiled().into_iter().filter(|k| k.is_cpu()) {
            assert_eq!(
                dispatch(kind, Matmul),
                vec![19.0, 22.0, 43.0, 50.0],
                "{kind}"
            );
        }
    }
}
