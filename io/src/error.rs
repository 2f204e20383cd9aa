use std::path::{Path, PathBuf};

/// Everything that can go wrong reading or writing a volume. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The file does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The file asked for.
        path: PathBuf,
    },
    /// An operating-system error while reading or writing.
    // `error`, not `source`: the message already carries it, and a `source` would make
    // `{:#}` chains print it twice.
    #[error("{}: {error}", path.display())]
    Os {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The extension is none of `.nii`, `.nii.gz`, `.npz`, `.npy`, `.dcm`, and it is no DICOM
    /// folder or file.
    #[error("{}: unknown file type (expected .nii, .nii.gz, .npz, .npy, or DICOM: a folder, DICOMDIR or .dcm)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A gzip stream ends before its end marker (the file was cut short).
    #[error("{}: gzip stream ends early (truncated file?)", path.display())]
    TruncatedGzip {
        /// The file.
        path: PathBuf,
    },
    /// A `.gz` file whose bytes are not a gzip stream.
    #[error("{}: not a gzip stream ({detail})", path.display())]
    BadGzip {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        detail: String,
    },
    /// The NIfTI header's magic is not `n+1` / `ni1` (not a NIfTI-1 file).
    #[error("{}: not a NIfTI-1 file (bad magic or header size)", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The NIfTI header is inconsistent (a dim, a code).
    #[error("{}: invalid NIfTI header: {detail}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The header declares more voxel data than the file could hold, even fully compressed:
    /// refused before anything is allocated for it.
    #[error("{}: the header declares {declared} bytes of voxel data, more than a {len}-byte file can hold (at most {room})", path.display())]
    DeclaresTooMuch {
        /// The file.
        path: PathBuf,
        /// Bytes the header's dimensions need.
        declared: u64,
        /// The file's size.
        len: u64,
        /// The most voxel data the file can hold.
        room: u64,
    },
    /// The voxel data is shorter than the header's dimensions need.
    #[error("{}: voxel data is shorter than the header says ({got} of {expected} bytes)", path.display())]
    ShortData {
        /// The file.
        path: PathBuf,
        /// Bytes present.
        got: usize,
        /// Bytes the header asks for.
        expected: usize,
    },
    /// A voxel type this crate does not read.
    #[error("{}: unsupported data type {dtype} (supported: {supported})", path.display())]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The type found.
        dtype: String,
        /// The types that are read.
        supported: &'static str,
    },
    /// Not a 3-D volume.
    #[error("{}: image has shape {dims:?}; only 3-D volumes are supported", path.display())]
    UnsupportedDims {
        /// The file.
        path: PathBuf,
        /// The dimensions found, in file order.
        dims: Vec<usize>,
    },
    /// Two arrays that must share a grid do not.
    #[error("{}: `{key}` has shape {found:?} but `{reference}` has shape {expected:?}", path.display())]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The key with the odd shape.
        key: String,
        /// Its shape.
        found: Vec<usize>,
        /// The key it was compared with.
        reference: String,
        /// That key's shape.
        expected: Vec<usize>,
    },
    /// The `.npz` is not a readable zip archive.
    #[error("{}: not a readable npz (zip) archive: {detail}", path.display())]
    BadZip {
        /// The file.
        path: PathBuf,
        /// What the zip reader said.
        detail: String,
    },
    /// An `.npy` member (or file) is malformed or of an unexpected type.
    #[error("{}: `{key}`: {detail}", path.display())]
    BadNpy {
        /// The file.
        path: PathBuf,
        /// The member name, without `.npy`.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A pickled object array is malformed or uses something the safe reader refuses.
    #[error("{}: `{key}`: malformed pickle at byte {offset}: {detail}", path.display())]
    Pickle {
        /// The file.
        path: PathBuf,
        /// The member name.
        key: String,
        /// Byte offset in the pickle stream.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
    /// A required key is absent.
    #[error("{}: missing key `{key}`", path.display())]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The missing key.
        key: String,
    },
    /// A DICOM file, folder or series that cannot be read or written as asked.
    #[error("{}: {detail}", path.display())]
    Dicom {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Values that cannot be what the key means (e.g. a label above 255, a box outside the volume).
    #[error("{}: {detail}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl IoError {
    /// Maps an `std::io::Error` on `path` to the most specific variant.
    pub(crate) fn os(path: &Path, source: std::io::Error) -> IoError {
        if source.kind() == std::io::ErrorKind::NotFound {
            IoError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            IoError::Os {
                path: path.to_path_buf(),
                error: source,
            }
        }
    }

    pub(crate) fn invalid(path: &Path, detail: impl Into<String>) -> IoError {
        IoError::Invalid {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn npy(path: &Path, key: &str, detail: impl Into<String>) -> IoError {
        IoError::BadNpy {
            path: path.to_path_buf(),
            key: key.to_string(),
            detail: detail.into(),
        }
    }
}

/// `Result` with [`IoError`].
pub type Result<T, E = IoError> = std::result::Result<T, E>;
