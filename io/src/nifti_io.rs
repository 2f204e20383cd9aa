//! NIfTI-1 (`.nii`, `.nii.gz`) reading and geometry-preserving writing, on the `nifti` crate.

use std::path::Path;

use nifti::{NiftiHeader, NiftiObject, NiftiType, ReaderOptions};

use crate::atomic::write_atomically;
use crate::error::{IoError, Result};
use crate::volume::{Volume, diagonal_affine};
use crate::{AnyVolume, Dtype};

const SUPPORTED: &str = "uint8, int16, int32, float32, float64";

/// The decompressed length of a `.gz` file when its gzip stream is complete (`None`: it is cut
/// short or not gzip). Only called on an error path.
fn complete_gzip_len(path: &Path) -> Option<u64> {
    let f = std::fs::File::open(path).ok()?;
    let mut d = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f));
    std::io::copy(&mut d, &mut std::io::sink()).ok()
}

fn map_nifti_error(path: &Path, e: nifti::NiftiError) -> IoError {
    use nifti::NiftiError as E;
    match e {
        E::InvalidFormat => IoError::BadMagic {
            path: path.to_path_buf(),
        },
        E::IncompatibleLength(got, expected) => IoError::ShortData {
            path: path.to_path_buf(),
            got,
            expected,
        },
        E::Io(io) => match io.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
                    IoError::BadHeader {
                        path: path.to_path_buf(),
                        detail: "the file is empty".into(),
                    }
                } else if crate::is_gz(path) {
                    match complete_gzip_len(path) {
                        // The gzip stream is whole: its content is what is short.
                        Some(n) if n < 348 => IoError::BadHeader {
                            path: path.to_path_buf(),
                            detail: format!(
                                "the decompressed file has {n} bytes, too few for a NIfTI-1 \
                                 header (348): not a NIfTI file"
                            ),
                        },
                        Some(_) => IoError::BadHeader {
                            path: path.to_path_buf(),
                            detail: "the decompressed file ends early".into(),
                        },
                        None => IoError::TruncatedGzip {
                            path: path.to_path_buf(),
                        },
                    }
                } else {
                    IoError::BadHeader {
                        path: path.to_path_buf(),
                        detail: "the file ends inside the header".into(),
                    }
                }
            }
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                if crate::is_gz(path) =>
            {
                IoError::BadGzip {
                    path: path.to_path_buf(),
                    detail: io.to_string(),
                }
            }
            _ => IoError::os(path, io),
        },
        E::UnsupportedDataType(t) => IoError::UnsupportedDtype {
            path: path.to_path_buf(),
            dtype: format!("{t:?}"),
            supported: SUPPORTED,
        },
        E::ReserveVolume(bytes, _) => IoError::invalid(
            path,
            format!("cannot allocate {bytes} bytes for the voxel data"),
        ),
        other => IoError::BadHeader {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

/// Shape `[z, y, x]` from a header, accepting trailing singleton dims (`x,y,z,1`).
fn volume_dims(path: &Path, header: &NiftiHeader) -> Result<[usize; 3]> {
    let dims = header
        .dim()
        .map_err(|e| map_nifti_error(path, e))?
        .iter()
        .map(|&d| d as usize)
        .collect::<Vec<_>>();
    let extra_ok = dims.len() >= 3 && dims[3..].iter().all(|&d| d == 1);
    if !extra_ok {
        return Err(IoError::UnsupportedDims {
            path: path.to_path_buf(),
            dims,
        });
    }
    Ok([dims[2], dims[1], dims[0]])
}

/// The affine exactly as nibabel's `Nifti1Header.get_best_affine()`: sform when
/// `sform_code > 0`, else qform when `qform_code > 0`, else the pixdims on the diagonal.
///
/// Written here because the `nifti` crate only offers it behind its `nalgebra` feature.
pub fn header_affine(h: &NiftiHeader) -> [[f64; 4]; 4] {
    if h.sform_code > 0 {
        let r = |row: [f32; 4]| row.map(f64::from);
        return [r(h.srow_x), r(h.srow_y), r(h.srow_z), [0.0, 0.0, 0.0, 1.0]];
    }
    let pix = |i: usize| f64::from(h.pixdim[i]);
    if h.qform_code > 0 {
        let (b, c, d) = (
            f64::from(h.quatern_b),
            f64::from(h.quatern_c),
            f64::from(h.quatern_d),
        );
        // nibabel: a = sqrt(1 - (b²+c²+d²)), clipped at 0 for rounding error.
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let rot = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - b * b - c * c,
            ],
        ];
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let zooms = [pix(1), pix(2), pix(3) * qfac];
        let off = [
            f64::from(h.quatern_x),
            f64::from(h.quatern_y),
            f64::from(h.quatern_z),
        ];
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = rot[i][j] * zooms[j];
            }
            m[i][3] = off[i];
        }
        m[3][3] = 1.0;
        return m;
    }
    diagonal_affine([pix(3).abs(), pix(2).abs(), pix(1).abs()])
}

fn decode<T: nifti::DataElement>(path: &Path, obj: nifti::InMemNiftiObject) -> Result<Vec<T>> {
    obj.into_volume()
        .into_nifti_typed_data::<T>()
        .map_err(|e| map_nifti_error(path, e))
}

/// Refuses a header that declares more voxel data than the file can hold, before anything is
/// allocated for it (found by fuzzing: a 5 kB `.nii.gz` declaring 6.8 GB made the reader reserve
/// the 6.8 GB first). A plain `.nii` must hold `vox_offset + bytes`; a gzip stream cannot
/// inflate more than 1032:1 (deflate's limit: 258-byte matches coded in ≥ 2 bits), so a
/// `.nii.gz` of `n` bytes holds at most about `1032·n`.
fn check_payload_fits(path: &Path, header: &NiftiHeader, dims: [usize; 3]) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // the read itself reports it
    };
    let bytes_per = u64::from(header.bitpix.max(8).unsigned_abs() / 8);
    let declared = dims
        .iter()
        .try_fold(bytes_per, |a, &d| a.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let offset = header.vox_offset.max(0.0) as u64;
    let room = if crate::is_gz(path) {
        meta.len().saturating_mul(1032)
    } else {
        meta.len().saturating_sub(offset)
    };
    if declared > room {
        return Err(IoError::DeclaresTooMuch {
            path: path.to_path_buf(),
            declared,
            len: meta.len(),
            room,
        });
    }
    Ok(())
}

/// Reads a 3-D NIfTI-1 file (`.nii` or `.nii.gz`) with its stored voxel type.
///
/// `scl_slope`/`scl_inter` are applied: when they change the values (slope ∉ {0, 1} or
/// inter ≠ 0) the result is `F32` (`F64` stays `F64`); otherwise the stored type is kept.
/// Dimensions `(x, y, z, 1, …)` count as 3-D; any other 4-D or 2-D image is an error.
///
/// # Errors
/// [`IoError::NotFound`], [`IoError::TruncatedGzip`], [`IoError::BadMagic`],
/// [`IoError::ShortData`], [`IoError::UnsupportedDtype`], [`IoError::UnsupportedDims`], …
/// each naming `path`.
pub fn read_nifti(path: impl AsRef<Path>) -> Result<AnyVolume> {
    let path = path.as_ref();
    // Header first: reject 4-D and exotic types before reading a possibly huge payload.
    let header = NiftiHeader::from_file(path).map_err(|e| map_nifti_error(path, e))?;
    let dims = volume_dims(path, &header)?;
    let dtype = header.data_type().map_err(|e| map_nifti_error(path, e))?;
    if !matches!(
        dtype,
        NiftiType::Uint8
            | NiftiType::Int16
            | NiftiType::Int32
            | NiftiType::Float32
            | NiftiType::Float64
    ) {
        return Err(IoError::UnsupportedDtype {
            path: path.to_path_buf(),
            dtype: format!("{dtype:?}"),
            supported: SUPPORTED,
        });
    }
    check_payload_fits(path, &header, dims)?;
    let obj = ReaderOptions::new()
        .read_file(path)
        .map_err(|e| map_nifti_error(path, e))?;
    let header = obj.header().clone();
    let spacing = [
        f64::from(header.pixdim[3]).abs(),
        f64::from(header.pixdim[2]).abs(),
        f64::from(header.pixdim[1]).abs(),
    ];
    let affine = header_affine(&header);
    let (slope, inter) = (header.scl_slope, header.scl_inter);
    let scaled = slope != 0.0 && (slope != 1.0 || inter != 0.0);
    let boxed = Some(Box::new(header));
    fn with_geometry<T>(
        path: &Path,
        data: Vec<T>,
        dims: [usize; 3],
        spacing: [f64; 3],
        affine: [[f64; 4]; 4],
        header: &Option<Box<NiftiHeader>>,
    ) -> Result<Volume<T>> {
        let mut v =
            Volume::new(data, dims, spacing).map_err(|e| IoError::invalid(path, e.to_string()))?;
        v.affine = affine;
        v.header = header.clone();
        Ok(v)
    }
    macro_rules! make {
        ($d:expr) => {
            with_geometry(path, $d, dims, spacing, affine, &boxed)
        };
    }
    let scale32 = |x: f32| x * slope + inter;
    Ok(match dtype {
        NiftiType::Uint8 => {
            let d = decode::<u8>(path, obj)?;
            if scaled {
                AnyVolume::F32(make!(
                    d.into_iter().map(|x| scale32(f32::from(x))).collect()
                )?)
            } else {
                AnyVolume::U8(make!(d)?)
            }
        }
        NiftiType::Int16 => {
            let d = decode::<i16>(path, obj)?;
            if scaled {
                AnyVolume::F32(make!(
                    d.into_iter().map(|x| scale32(f32::from(x))).collect()
                )?)
            } else {
                AnyVolume::I16(make!(d)?)
            }
        }
        NiftiType::Int32 => {
            let d = decode::<i32>(path, obj)?;
            if scaled {
                AnyVolume::F32(make!(d.into_iter().map(|x| scale32(x as f32)).collect())?)
            } else {
                AnyVolume::I32(make!(d)?)
            }
        }
        NiftiType::Float32 => {
            let d = decode::<f32>(path, obj)?;
            AnyVolume::F32(make!(if scaled {
                d.into_iter().map(scale32).collect()
            } else {
                d
            })?)
        }
        _ => {
            let d = decode::<f64>(path, obj)?;
            let (s, i) = (f64::from(slope), f64::from(inter));
            AnyVolume::F64(make!(if scaled {
                d.into_iter().map(|x| x * s + i).collect()
            } else {
                d
            })?)
        }
    })
}

/// A header for `vol` when it has none of its own: sform (code 1, scanner) from the affine,
/// pixdims from the spacing, millimetre units.
fn fresh_header<T>(vol: &Volume<T>) -> NiftiHeader {
    let a = &vol.affine;
    let row = |r: usize| [a[r][0], a[r][1], a[r][2], a[r][3]].map(|v| v as f32);
    NiftiHeader {
        pixdim: [
            1.0,
            vol.spacing[2] as f32,
            vol.spacing[1] as f32,
            vol.spacing[0] as f32,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        sform_code: 1,
        qform_code: 0,
        srow_x: row(0),
        srow_y: row(1),
        srow_z: row(2),
        xyzt_units: 2, // NIFTI_UNITS_MM
        ..NiftiHeader::default()
    }
}

/// Voxel types [`write_nifti`] can store: `u8` (masks), `i16` (CT), `f32` (probabilities).
pub trait NiftiWritable: nifti::DataElement + bytemuck::Pod + Copy {}
impl NiftiWritable for u8 {}
impl NiftiWritable for i16 {}
impl NiftiWritable for f32 {}

/// Writes `vol` as NIfTI-1 (`.nii` or `.nii.gz`, chosen by the name) with its geometry.
///
/// When the volume carries the header it was read with, every geometry field of that header
/// (qform/sform codes, quaternions, srows, pixdims, units) is written back unchanged, so the file
/// overlays its source exactly; only the type, scaling (1, 0) and display range are reset. The
/// file appears atomically: it is written under a temporary name in the same folder, then
/// renamed.
///
/// # Errors
/// [`IoError::UnknownFormat`] for other extensions; [`IoError::Os`] when the folder is not
/// writable.
pub fn write_nifti<T: NiftiWritable>(path: impl AsRef<Path>, vol: &Volume<T>) -> Result<()> {
    let path = path.as_ref();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let suffix = match name.as_deref() {
        Some(n) if n.ends_with(".nii.gz") => ".nii.gz",
        Some(n) if n.ends_with(".nii") => ".nii",
        _ => {
            return Err(IoError::UnknownFormat {
                path: path.to_path_buf(),
            });
        }
    };
    let header = output_header(vol);
    let [nz, ny, nx] = vol.dims;
    let view = ndarray::ArrayView3::from_shape((nz, ny, nx), &vol.data)
        .map_err(|e| IoError::invalid(path, e.to_string()))?;
    // The nifti writer takes the array in NIfTI axis order (x, y, z) and writes it Fortran
    // order, i.e. x fastest: the reversed view makes that exactly our (z, y, x) C order.
    let xyz = view.reversed_axes();
    write_atomically(path, suffix, |tmp| {
        nifti::writer::WriterOptions::new(tmp)
            .reference_header(&header)
            .write_nifti(&xyz)
            .map_err(|e| match e {
                nifti::NiftiError::Io(io) => IoError::os(path, io),
                other => IoError::invalid(path, other.to_string()),
            })
    })
}

/// The header [`write_nifti`] hands the nifti writer (which then sets the type, dims, offset
/// and scaling): the volume's own header if it has one, else a fresh one; display range reset.
fn output_header<T>(vol: &Volume<T>) -> NiftiHeader {
    let mut header = match &vol.header {
        Some(h) => (**h).clone(),
        None => fresh_header(vol),
    };
    header.cal_min = 0.0;
    header.cal_max = 0.0;
    header
}

/// `vol` as the bytes of an uncompressed `.nii` file, exactly as [`write_nifti`] would write
/// them, without touching the disk (the viewer serves these to the page).
///
/// The nifti crate (0.18) writes only to paths, so the 348-byte NIfTI-1 header is laid out
/// here, field by field in the order of its `write_header`, with the fields its writer sets
/// (`dim`, `datatype`, `bitpix`, `vox_offset` 352, scaling 1/0, magic `n+1`); a test checks the
/// bytes against the crate's writer. Native byte order, as the crate writes a fresh header.
///
/// # Errors
/// [`IoError::Invalid`] when an axis is longer than NIfTI-1's 32,767 or the description is
/// longer than 80 bytes; `name` stands for the file in the message.
pub fn nifti_bytes<T: NiftiWritable>(vol: &Volume<T>, name: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = name.as_ref();
    let mut h = output_header(vol);
    h.validate_description()
        .map_err(|e| IoError::invalid(path, e.to_string()))?;
    let [nz, ny, nx] = vol.dims;
    let mut dim = [1u16; 8];
    dim[0] = 3;
    for (d, n) in dim[1..4].iter_mut().zip([nx, ny, nz]) {
        *d = u16::try_from(n)
            .ok()
            .filter(|&d| d <= i16::MAX as u16)
            .ok_or_else(|| {
                IoError::invalid(
                    path,
                    format!("axis of {n} voxels: NIfTI-1 holds at most 32767"),
                )
            })?;
    }
    let datatype = T::DATA_TYPE;
    let mut out = Vec::with_capacity(352 + std::mem::size_of_val(vol.data.as_slice()));
    let mut put = |b: &[u8]| out.extend_from_slice(b);
    put(&348i32.to_ne_bytes());
    put(&h.data_type);
    put(&h.db_name);
    put(&h.extents.to_ne_bytes());
    put(&h.session_error.to_ne_bytes());
    put(&[h.regular, h.dim_info]);
    for d in dim {
        put(&d.to_ne_bytes());
    }
    for f in [h.intent_p1, h.intent_p2, h.intent_p3] {
        put(&f.to_ne_bytes());
    }
    put(&h.intent_code.to_ne_bytes());
    put(&(datatype as i16).to_ne_bytes());
    put(&((datatype.size_of() * 8) as i16).to_ne_bytes());
    put(&h.slice_start.to_ne_bytes());
    for f in h.pixdim {
        put(&f.to_ne_bytes());
    }
    // vox_offset, scl_slope, scl_inter
    for f in [352.0f32, 1.0, 0.0] {
        put(&f.to_ne_bytes());
    }
    put(&h.slice_end.to_ne_bytes());
    put(&[h.slice_code, h.xyzt_units]);
    for f in [h.cal_max, h.cal_min, h.slice_duration, h.toffset] {
        put(&f.to_ne_bytes());
    }
    put(&h.glmax.to_ne_bytes());
    put(&h.glmin.to_ne_bytes());
    put(&h.descrip);
    put(&h.aux_file);
    put(&h.qform_code.to_ne_bytes());
    put(&h.sform_code.to_ne_bytes());
    for f in [
        h.quatern_b,
        h.quatern_c,
        h.quatern_d,
        h.quatern_x,
        h.quatern_y,
        h.quatern_z,
    ] {
        put(&f.to_ne_bytes());
    }
    for f in h.srow_x.iter().chain(&h.srow_y).chain(&h.srow_z) {
        put(&f.to_ne_bytes());
    }
    put(&h.intent_name);
    put(b"n+1\0");
    // No extensions: the four-byte extender of zeros.
    put(&[0; 4]);
    // (z, y, x) C order is NIfTI's x-fastest order.
    put(bytemuck::cast_slice(&vol.data));
    Ok(out)
}

impl Dtype {
    pub(crate) fn nifti_name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }
}
