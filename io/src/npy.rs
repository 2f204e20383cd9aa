//! `.npy` members: numeric arrays through `ndarray-npy`, and the two kinds it refuses
//! (`|O` object arrays holding a pickle, `<Un` unicode arrays) by hand.

use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use crate::error::{IoError, Result};
use crate::pickle::{PyValue, read_pickle, write_object_array};

/// The elements of one `.npy` array.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NpyData {
    /// `|b1`
    Bool(Vec<bool>),
    /// `|u1`
    U8(Vec<u8>),
    /// `|i1`
    I8(Vec<i8>),
    /// `<i2`
    I16(Vec<i16>),
    /// `<u2`
    U16(Vec<u16>),
    /// `<i4`
    I32(Vec<i32>),
    /// `<u4`
    U32(Vec<u32>),
    /// `<i8`
    I64(Vec<i64>),
    /// `<u8`
    U64(Vec<u64>),
    /// `<f4`
    F32(Vec<f32>),
    /// `<f8`
    F64(Vec<f64>),
    /// `<Un`: fixed-width UTF-32 strings, trailing NULs stripped.
    Str(Vec<String>),
    /// `|O`: Python objects from the pickle.
    Object(Vec<PyValue>),
}

/// One `.npy` array: shape and C-order elements.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The shape (empty for a 0-d array).
    pub shape: Vec<usize>,
    /// The elements.
    pub data: NpyData,
}

impl NpyArray {
    /// numpy's name for the element type (`uint8`, `object`, `<U2`, …).
    pub fn dtype_name(&self) -> String {
        match &self.data {
            NpyData::Bool(_) => "bool".into(),
            NpyData::U8(_) => "uint8".into(),
            NpyData::I8(_) => "int8".into(),
            NpyData::I16(_) => "int16".into(),
            NpyData::U16(_) => "uint16".into(),
            NpyData::I32(_) => "int32".into(),
            NpyData::U32(_) => "uint32".into(),
            NpyData::I64(_) => "int64".into(),
            NpyData::U64(_) => "uint64".into(),
            NpyData::F32(_) => "float32".into(),
            NpyData::F64(_) => "float64".into(),
            NpyData::Str(v) => format!(
                "<U{}",
                v.iter()
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(1)
                    .max(1)
            ),
            NpyData::Object(_) => "object".into(),
        }
    }

    /// The elements as `f64` for numeric arrays (`None` for strings and objects).
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        Some(match &self.data {
            NpyData::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
            NpyData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::F64(v) => v.clone(),
            NpyData::Str(_) | NpyData::Object(_) => return None,
        })
    }
}

/// The parsed `.npy` header dict.
pub(crate) struct Header {
    descr: String,
    fortran: bool,
    pub(crate) shape: Vec<usize>,
    data_offset: usize,
}

pub(crate) fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an .npy array (bad magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or("header runs past the end of the data")?;
    let text = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
    let after = |key: &str| -> std::result::Result<&str, String> {
        let i = text
            .find(&format!("'{key}':"))
            .ok_or(format!("header has no '{key}'"))?;
        Ok(text[i + key.len() + 3..].trim_start())
    };
    let d = after("descr")?;
    let descr = match d.chars().next() {
        Some(q @ ('\'' | '"')) => {
            let rest = &d[1..];
            let e = rest.find(q).ok_or("unterminated descr")?;
            rest[..e].to_string()
        }
        _ => return Err("structured dtypes are not supported".into()),
    };
    let fortran = after("fortran_order")?.starts_with("True");
    let s = after("shape")?;
    let s = s.strip_prefix('(').ok_or("shape is not a tuple")?;
    let s = &s[..s.find(')').ok_or("unterminated shape")?];
    let shape = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad shape entry `{p}`"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Header {
        descr,
        fortran,
        shape,
        data_offset: end,
    })
}

fn numeric<T: ndarray_npy::ReadableElement + Clone>(
    bytes: &[u8],
) -> std::result::Result<(Vec<usize>, Vec<T>), String> {
    let a = ArrayD::<T>::read_npy(bytes).map_err(|e| e.to_string())?;
    let shape = a.shape().to_vec();
    // Standard (C) order regardless of how the file stored it.
    let v = if a.is_standard_layout() {
        a.into_raw_vec_and_offset().0
    } else {
        a.iter().cloned().collect()
    };
    Ok((shape, v))
}

/// Parses one `.npy` byte string. `path`/`key` only name the source in errors.
pub fn parse_npy(path: &Path, key: &str, bytes: &[u8]) -> Result<NpyArray> {
    let h = parse_header(bytes).map_err(|d| IoError::npy(path, key, d))?;
    let n: usize = h
        .shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| IoError::npy(path, key, "shape overflows"))?;
    let body = &bytes[h.data_offset..];
    let kind = h.descr.trim_start_matches(['<', '|', '=']);
    macro_rules! num {
        ($t:ty, $v:ident) => {{
            let (shape, v) = numeric::<$t>(bytes).map_err(|d| IoError::npy(path, key, d))?;
            NpyArray {
                shape,
                data: NpyData::$v(v),
            }
        }};
    }
    Ok(match kind.trim_start_matches('>') {
        "b1" => num!(bool, Bool),
        "u1" => num!(u8, U8),
        "i1" => num!(i8, I8),
        "i2" => num!(i16, I16),
        "u2" => num!(u16, U16),
        "i4" => num!(i32, I32),
        "u4" => num!(u32, U32),
        "i8" => num!(i64, I64),
        "u8" => num!(u64, U64),
        "f4" => num!(f32, F32),
        "f8" => num!(f64, F64),
        "O" => {
            let v = read_pickle(body).map_err(|e| IoError::Pickle {
                path: path.to_path_buf(),
                key: key.to_string(),
                offset: e.offset,
                detail: e.detail,
            })?;
            let items = match v {
                PyValue::Array { shape, items } if shape == h.shape => items,
                PyValue::Array { shape, .. } => {
                    return Err(IoError::npy(
                        path,
                        key,
                        format!(
                            "header shape {:?} but pickled array shape {shape:?}",
                            h.shape
                        ),
                    ));
                }
                _ => {
                    return Err(IoError::npy(
                        path,
                        key,
                        "pickle does not hold a numpy array",
                    ));
                }
            };
            NpyArray {
                shape: h.shape,
                data: NpyData::Object(items),
            }
        }
        k if k.starts_with('U') => {
            if h.fortran {
                return Err(IoError::npy(
                    path,
                    key,
                    "Fortran-ordered string arrays are not supported",
                ));
            }
            let width: usize = k[1..]
                .parse()
                .map_err(|_| IoError::npy(path, key, format!("bad string type `{}`", h.descr)))?;
            let need = n
                .checked_mul(width)
                .and_then(|x| x.checked_mul(4))
                .ok_or_else(|| IoError::npy(path, key, "shape overflows"))?;
            if body.len() < need {
                return Err(IoError::npy(
                    path,
                    key,
                    format!("data is {} bytes, {need} expected", body.len()),
                ));
            }
            let big = h.descr.starts_with('>');
            // Zero-width strings take no bytes, so the data cannot bound their count: cap it
            // (a fuzz find: a `<U0` header declaring 8.9e9 of them).
            if width == 0 && n > 1 << 20 {
                return Err(IoError::npy(
                    path,
                    key,
                    format!("{n} zero-width strings: more than this reader accepts"),
                ));
            }
            let mut out = Vec::with_capacity(n.min(body.len().max(1)));
            if width == 0 {
                // `<U0`: numpy's zero-width strings, all empty (a fuzz find: chunks of 0 bytes
                // panicked).
                out.resize(n, String::new());
            }
            for el in body[..need]
                .chunks_exact((width * 4).max(1))
                .take(n * usize::from(width > 0))
            {
                let mut s = String::new();
                for c in el.chunks_exact(4) {
                    let a = [c[0], c[1], c[2], c[3]];
                    let cp = if big {
                        u32::from_be_bytes(a)
                    } else {
                        u32::from_le_bytes(a)
                    };
                    if cp == 0 {
                        break;
                    }
                    s.push(char::from_u32(cp).ok_or_else(|| {
                        IoError::npy(path, key, format!("invalid code point {cp:#x}"))
                    })?);
                }
                out.push(s);
            }
            NpyArray {
                shape: h.shape,
                data: NpyData::Str(out),
            }
        }
        _ => {
            return Err(IoError::npy(
                path,
                key,
                format!("unsupported dtype `{}`", h.descr),
            ));
        }
    })
}

/// numpy 1.26's `_write_array_header` + `_wrap_header` for format version 1.0: the dict in
/// sorted-key order, 21-digit growth padding, then spaces and `\n` to a multiple of 64 bytes.
pub(crate) fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_repr = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_repr}, }}");
    if let Some(first) = shape.first() {
        header.push_str(&" ".repeat(21usize.saturating_sub(first.to_string().len())));
    }
    let hlen = header.len() + 1;
    let padlen = 64 - ((8 + 2 + hlen) % 64);
    let total = hlen + padlen;
    let mut out = Vec::with_capacity(10 + total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(total as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padlen));
    out.push(b'\n');
    out
}

/// Serialises an array as numpy 1.26 would (`np.save`): numeric types through ndarray-npy,
/// strings as `<Un`, objects as a protocol-3 pickle.
pub fn to_npy_bytes(a: &NpyArray) -> std::result::Result<Vec<u8>, String> {
    fn num<T: ndarray_npy::WritableElement + Clone>(
        shape: &[usize],
        v: &[T],
    ) -> std::result::Result<Vec<u8>, String> {
        let arr = ArrayD::from_shape_vec(shape.to_vec(), v.to_vec()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        arr.write_npy(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }
    match &a.data {
        NpyData::Bool(v) => num(&a.shape, v),
        NpyData::U8(v) => num(&a.shape, v),
        NpyData::I8(v) => num(&a.shape, v),
        NpyData::I16(v) => num(&a.shape, v),
        NpyData::U16(v) => num(&a.shape, v),
        NpyData::I32(v) => num(&a.shape, v),
        NpyData::U32(v) => num(&a.shape, v),
        NpyData::I64(v) => num(&a.shape, v),
        NpyData::U64(v) => num(&a.shape, v),
        NpyData::F32(v) => num(&a.shape, v),
        NpyData::F64(v) => num(&a.shape, v),
        NpyData::Str(v) => {
            let width = v
                .iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(1)
                .max(1);
            let mut out = npy_header(&format!("<U{width}"), &a.shape);
            for s in v {
                let mut n = 0;
                for c in s.chars() {
                    out.extend_from_slice(&(c as u32).to_le_bytes());
                    n += 1;
                }
                out.extend(std::iter::repeat_n(0u8, 4 * (width - n)));
            }
            Ok(out)
        }
        NpyData::Object(items) => {
            let mut out = npy_header("|O", &a.shape);
            out.extend_from_slice(&write_object_array(&a.shape, items));
            Ok(out)
        }
    }
}
