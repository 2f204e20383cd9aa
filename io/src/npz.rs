//! CVPR 2025 challenge `.npz` cases: `imgs`, `gts`, `spacing`, `prev_pred`, `segs` as plain
//! arrays and `boxes`, `clicks`, `clicks_order` as numpy object arrays (CHALLENGE.md §2).

use std::io::{Read, Write};
use std::path::Path;

use crate::AnyVolume;
use crate::atomic::write_atomically;
use crate::error::{IoError, Result};
use crate::npy::{NpyArray, NpyData, parse_npy, to_npy_bytes};
use crate::pickle::PyValue;
use crate::volume::Volume;

/// Reads every member of an `.npz` archive, in archive order, keys without `.npy`.
///
/// # Errors
/// [`IoError::BadZip`] for a file that is not a zip archive (or has no central directory);
/// [`IoError::BadNpy`] / [`IoError::Pickle`] for a member that does not decode (including a
/// failed CRC check of deflated data).
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, NpyArray)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| IoError::os(path, e))?;
    read_npz_from(std::io::BufReader::new(file), path)
}

/// [`read_npz`] on an archive in memory or any other seekable reader (an `.npz` embedded in a
/// binary, an upload); `name` stands for the file in errors.
///
/// # Errors
/// As [`read_npz`].
pub fn read_npz_from<R: std::io::Read + std::io::Seek>(
    reader: R,
    name: impl AsRef<Path>,
) -> Result<Vec<(String, NpyArray)>> {
    let path = name.as_ref();
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| IoError::BadZip {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| IoError::BadZip {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let name = member.name().to_string();
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        // Bounded by the member's declared size, checked by the CRC at the end of the stream.
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(
                usize::try_from(member.size())
                    .unwrap_or(usize::MAX)
                    .min(1 << 33),
            )
            .map_err(|_| IoError::npy(path, &key, "member too large to hold in memory"))?;
        member
            .read_to_end(&mut bytes)
            .map_err(|e| IoError::npy(path, &key, format!("cannot decompress: {e}")))?;
        out.push((key.clone(), parse_npy(path, &key, &bytes)?));
    }
    Ok(out)
}

/// Writes an `.npz` like `numpy.savez_compressed`: one deflated `<key>.npy` member per array,
/// in the order given, atomically (temporary file, then rename).
///
/// # Errors
/// [`IoError::Os`] when the folder is not writable; [`IoError::Invalid`] for an array whose
/// shape and length disagree.
pub fn write_npz(path: impl AsRef<Path>, members: &[(&str, &NpyArray)]) -> Result<()> {
    let path = path.as_ref();
    let mut blobs = Vec::with_capacity(members.len());
    for (key, a) in members {
        blobs.push((
            *key,
            to_npy_bytes(a).map_err(|d| IoError::npy(path, key, d))?,
        ));
    }
    write_atomically(path, ".npz", |tmp| {
        let file = std::fs::File::create(tmp).map_err(|e| IoError::os(path, e))?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(
                blobs
                    .iter()
                    .any(|(_, b)| b.len() as u64 >= u64::from(u32::MAX)),
            );
        for (key, bytes) in &blobs {
            zip.start_file(format!("{key}.npy"), opts)
                .map_err(|e| IoError::invalid(path, format!("zip: {e}")))?;
            zip.write_all(bytes).map_err(|e| IoError::os(path, e))?;
        }
        let mut inner = zip
            .finish()
            .map_err(|e| IoError::invalid(path, format!("zip: {e}")))?;
        inner.flush().map_err(|e| IoError::os(path, e))?;
        Ok(())
    })
}

/// Writes one array as an `.npy` file (numpy's format 1.0), atomically.
///
/// # Errors
/// [`IoError::Os`] when the folder is not writable; [`IoError::BadNpy`] for an array whose
/// shape and length disagree.
pub fn write_npy(path: impl AsRef<Path>, array: &NpyArray) -> Result<()> {
    let path = path.as_ref();
    let key = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = to_npy_bytes(array).map_err(|d| IoError::npy(path, &key, d))?;
    write_atomically(path, ".npy", |tmp| {
        std::fs::write(tmp, &bytes).map_err(|e| IoError::os(path, e))
    })
}

/// Reads one `.npy` file (any dtype this crate knows).
///
/// # Errors
/// [`IoError::NotFound`], [`IoError::BadNpy`].
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let key = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = std::fs::read(path).map_err(|e| IoError::os(path, e))?;
    parse_npy(path, &key, &bytes)
}

/// One class's box as `get_boxes.py` writes it; all intervals closed, array indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChallengeBox {
    /// First slice holding the class.
    pub z_min: i64,
    /// Last slice holding the class.
    pub z_max: i64,
    /// Median of the class's unique slice indices.
    pub z_mid: i64,
    /// Left column of the in-plane box on slice `z_mid`.
    pub z_mid_x_min: i64,
    /// Top row.
    pub z_mid_y_min: i64,
    /// Right column (inclusive).
    pub z_mid_x_max: i64,
    /// Bottom row (inclusive).
    pub z_mid_y_max: i64,
}

const BOX_KEYS: [&str; 7] = [
    "z_min",
    "z_max",
    "z_mid",
    "z_mid_x_min",
    "z_mid_y_min",
    "z_mid_x_max",
    "z_mid_y_max",
];

impl ChallengeBox {
    /// The 3-D box `([z0, y0, x0], [z1, y1, x1])`, both corners inclusive.
    pub fn zyx_inclusive(&self) -> ([i64; 3], [i64; 3]) {
        (
            [self.z_min, self.z_mid_y_min, self.z_mid_x_min],
            [self.z_max, self.z_mid_y_max, self.z_mid_x_max],
        )
    }

    fn fields(&self) -> [i64; 7] {
        [
            self.z_min,
            self.z_max,
            self.z_mid,
            self.z_mid_x_min,
            self.z_mid_y_min,
            self.z_mid_x_max,
            self.z_mid_y_max,
        ]
    }

    fn to_py(self) -> PyValue {
        PyValue::Dict(
            BOX_KEYS
                .iter()
                .zip(self.fields())
                .map(|(k, v)| (PyValue::Str((*k).to_string()), PyValue::Int(v)))
                .collect(),
        )
    }
}

/// `fg` (the click lies in the class: add it) or `bg` (it does not: remove it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClickKind {
    /// Foreground click.
    Fg,
    /// Background click.
    Bg,
}

impl ClickKind {
    /// `"fg"` or `"bg"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClickKind::Fg => "fg",
            ClickKind::Bg => "bg",
        }
    }
}

/// One class's accumulated clicks, `[z, y, x]` array indices, in time order per list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassClicks {
    /// Foreground clicks.
    pub fg: Vec<[usize; 3]>,
    /// Background clicks.
    pub bg: Vec<[usize; 3]>,
}

impl ClassClicks {
    fn to_py(&self) -> PyValue {
        let list = |v: &[[usize; 3]]| {
            PyValue::List(
                v.iter()
                    .map(|c| PyValue::List(c.iter().map(|&x| PyValue::Int(x as i64)).collect()))
                    .collect(),
            )
        };
        PyValue::Dict(vec![
            (PyValue::Str("fg".into()), list(&self.fg)),
            (PyValue::Str("bg".into()), list(&self.bg)),
        ])
    }
}

/// A challenge case file (input or output), every key optional but at least one 3-D array.
///
/// List index `i` of `boxes`, `clicks`, `clicks_order` is class label `i + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengeCase {
    /// The image (`uint8` in the challenge; other numeric types are accepted).
    pub imgs: Option<AnyVolume>,
    /// Ground-truth labels (training files).
    pub gts: Option<Volume<u8>>,
    /// The previous step's prediction.
    pub prev_pred: Option<Volume<u8>>,
    /// A prediction (output files).
    pub segs: Option<Volume<u8>>,
    /// `spacing` exactly as stored (the evaluator's order; see CHALLENGE.md §7).
    pub spacing: Option<[f64; 3]>,
    /// One box per class.
    pub boxes: Option<Vec<ChallengeBox>>,
    /// Accumulated clicks per class.
    pub clicks: Option<Vec<ClassClicks>>,
    /// Per class, which list got the click of each step (`None`: no click that step).
    pub clicks_order: Option<Vec<Vec<Option<ClickKind>>>>,
    /// Member names in file order (with any keys this type does not model).
    pub keys: Vec<String>,
}

fn labels_from(path: &Path, key: &str, a: &NpyArray) -> Result<Vec<u8>> {
    if let NpyData::U8(v) = &a.data {
        return Ok(v.clone());
    }
    let vals = a.to_f64().ok_or_else(|| {
        IoError::npy(
            path,
            key,
            format!("expected integer labels, found {}", a.dtype_name()),
        )
    })?;
    vals.into_iter()
        .map(|x| {
            if x.fract() == 0.0 && (0.0..=255.0).contains(&x) {
                Ok(x as u8)
            } else {
                Err(IoError::npy(
                    path,
                    key,
                    format!("label value {x} is not an integer in 0..=255"),
                ))
            }
        })
        .collect()
}

fn image_from(
    path: &Path,
    key: &str,
    a: &NpyArray,
    dims: [usize; 3],
    spacing: [f64; 3],
) -> Result<AnyVolume> {
    let mk = |e: crate::volume::ShapeError| IoError::npy(path, key, e.to_string());
    Ok(match &a.data {
        NpyData::U8(v) => AnyVolume::U8(Volume::new(v.clone(), dims, spacing).map_err(mk)?),
        NpyData::Bool(v) => AnyVolume::U8(
            Volume::new(v.iter().map(|&b| u8::from(b)).collect(), dims, spacing).map_err(mk)?,
        ),
        NpyData::I8(v) => AnyVolume::I16(
            Volume::new(v.iter().map(|&x| i16::from(x)).collect(), dims, spacing).map_err(mk)?,
        ),
        NpyData::I16(v) => AnyVolume::I16(Volume::new(v.clone(), dims, spacing).map_err(mk)?),
        NpyData::U16(v) => AnyVolume::I32(
            Volume::new(v.iter().map(|&x| i32::from(x)).collect(), dims, spacing).map_err(mk)?,
        ),
        NpyData::I32(v) => AnyVolume::I32(Volume::new(v.clone(), dims, spacing).map_err(mk)?),
        NpyData::F32(v) => AnyVolume::F32(Volume::new(v.clone(), dims, spacing).map_err(mk)?),
        other => {
            let a2 = NpyArray {
                shape: a.shape.clone(),
                data: other.clone(),
            };
            let v = a2.to_f64().ok_or_else(|| {
                IoError::npy(
                    path,
                    key,
                    format!("expected a numeric image, found {}", a.dtype_name()),
                )
            })?;
            AnyVolume::F64(Volume::new(v, dims, spacing).map_err(mk)?)
        }
    })
}

fn py_i64(path: &Path, key: &str, v: &PyValue, what: &str) -> Result<i64> {
    v.as_int()
        .ok_or_else(|| IoError::npy(path, key, format!("{what} is not an integer ({v:?})")))
}

fn parse_boxes(path: &Path, a: &NpyArray) -> Result<Vec<ChallengeBox>> {
    let NpyData::Object(items) = &a.data else {
        return Err(IoError::npy(
            path,
            "boxes",
            format!("expected an object array, found {}", a.dtype_name()),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut f = [0i64; 7];
            for (slot, k) in f.iter_mut().zip(BOX_KEYS) {
                let v = d
                    .get(k)
                    .ok_or_else(|| IoError::npy(path, "boxes", format!("box {i} has no `{k}`")))?;
                *slot = py_i64(path, "boxes", v, &format!("box {i} `{k}`"))?;
            }
            Ok(ChallengeBox {
                z_min: f[0],
                z_max: f[1],
                z_mid: f[2],
                z_mid_x_min: f[3],
                z_mid_y_min: f[4],
                z_mid_x_max: f[5],
                z_mid_y_max: f[6],
            })
        })
        .collect()
}

fn parse_clicks(path: &Path, a: &NpyArray, dims: Option<[usize; 3]>) -> Result<Vec<ClassClicks>> {
    let NpyData::Object(items) = &a.data else {
        return Err(IoError::npy(
            path,
            "clicks",
            format!("expected an object array, found {}", a.dtype_name()),
        ));
    };
    let coords = |class: usize, list: Option<&PyValue>, name: &str| -> Result<Vec<[usize; 3]>> {
        let Some(list) = list else {
            return Ok(Vec::new());
        };
        let seq = list.as_seq().ok_or_else(|| {
            IoError::npy(
                path,
                "clicks",
                format!("class {} `{name}` is not a list", class + 1),
            )
        })?;
        seq.iter()
            .map(|c| {
                let xs = c.as_seq().filter(|s| s.len() == 3).ok_or_else(|| {
                    IoError::npy(path, "clicks", format!("class {} `{name}` click {c:?} is not [z, y, x]", class + 1))
                })?;
                let mut out = [0usize; 3];
                for (ax, (o, x)) in out.iter_mut().zip(xs).enumerate() {
                    let v = py_i64(path, "clicks", x, "click coordinate")?;
                    let limit = dims.map_or(i64::MAX, |d| d[ax] as i64);
                    if v < 0 || v >= limit {
                        return Err(IoError::invalid(
                            path,
                            format!("`clicks`: class {} `{name}` click {xs:?} lies outside the volume {:?}", class + 1, dims.unwrap_or_default()),
                        ));
                    }
                    *o = v as usize;
                }
                Ok(out)
            })
            .collect()
    };
    items
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if !matches!(d, PyValue::Dict(_)) {
                return Err(IoError::npy(
                    path,
                    "clicks",
                    format!("class {} entry is not a dict", i + 1),
                ));
            }
            Ok(ClassClicks {
                fg: coords(i, d.get("fg"), "fg")?,
                bg: coords(i, d.get("bg"), "bg")?,
            })
        })
        .collect()
}

fn parse_order(path: &Path, a: &NpyArray) -> Result<Vec<Vec<Option<ClickKind>>>> {
    let one = |s: Option<&str>| -> Result<Option<ClickKind>> {
        match s {
            None => Ok(None),
            Some("fg") => Ok(Some(ClickKind::Fg)),
            Some("bg") => Ok(Some(ClickKind::Bg)),
            Some(o) => Err(IoError::npy(
                path,
                "clicks_order",
                format!("entry `{o}` is not fg, bg or None"),
            )),
        }
    };
    let cell = |v: &PyValue| -> Result<Option<ClickKind>> {
        match v {
            PyValue::None => Ok(None),
            PyValue::Str(s) => one(Some(s)),
            o => Err(IoError::npy(
                path,
                "clicks_order",
                format!("entry {o:?} is not fg, bg or None"),
            )),
        }
    };
    let rows = a.shape.first().copied().unwrap_or(0);
    match (&a.data, a.shape.len()) {
        (NpyData::Str(v), 2) => v
            .chunks(a.shape[1].max(1))
            .take(rows)
            .map(|r| r.iter().map(|s| one(Some(s))).collect())
            .collect(),
        (NpyData::Object(v), 2) => v
            .chunks(a.shape[1].max(1))
            .take(rows)
            .map(|r| r.iter().map(cell).collect())
            .collect(),
        (NpyData::Object(v), 1) => v
            .iter()
            .map(|r| match r.as_seq() {
                Some(s) => s.iter().map(cell).collect(),
                None => Err(IoError::npy(path, "clicks_order", "row is not a list")),
            })
            .collect(),
        (NpyData::Str(_) | NpyData::Object(_), 0) => Ok(Vec::new()),
        _ => Err(IoError::npy(
            path,
            "clicks_order",
            format!(
                "expected a string or object array of shape (classes, steps), found {} {:?}",
                a.dtype_name(),
                a.shape
            ),
        )),
    }
}

impl ChallengeCase {
    /// Reads a challenge `.npz`. Every 3-D array must share one shape; clicks must lie inside
    /// it.
    ///
    /// # Errors
    /// [`IoError::BadZip`], [`IoError::BadNpy`], [`IoError::Pickle`],
    /// [`IoError::ShapeMismatch`], [`IoError::Invalid`]; all name the file.
    pub fn read(path: impl AsRef<Path>) -> Result<ChallengeCase> {
        let path = path.as_ref();
        Self::from_members(read_npz(path)?, path)
    }

    /// [`Self::read`] on the bytes of an `.npz` (one embedded in a binary, an upload); `name`
    /// stands for the file in errors.
    ///
    /// # Errors
    /// As [`Self::read`].
    pub fn from_npz_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<ChallengeCase> {
        let name = name.as_ref();
        Self::from_members(read_npz_from(std::io::Cursor::new(bytes), name)?, name)
    }

    fn from_members(members: Vec<(String, NpyArray)>, path: &Path) -> Result<ChallengeCase> {
        let keys: Vec<String> = members.iter().map(|(k, _)| k.clone()).collect();
        let get = |k: &str| members.iter().find(|(n, _)| n == k).map(|(_, a)| a);

        let spacing = match get("spacing") {
            None => None,
            Some(a) => {
                let v = a.to_f64().filter(|v| v.len() == 3).ok_or_else(|| {
                    IoError::npy(
                        path,
                        "spacing",
                        format!("expected 3 numbers, found {} {:?}", a.dtype_name(), a.shape),
                    )
                })?;
                if v.iter().any(|s| !s.is_finite() || *s <= 0.0) {
                    return Err(IoError::invalid(
                        path,
                        format!("`spacing` {v:?} must be three positive numbers"),
                    ));
                }
                Some([v[0], v[1], v[2]])
            }
        };
        let vol_spacing = spacing.unwrap_or([1.0; 3]);

        let mut dims: Option<([usize; 3], &str)> = None;
        for key in ["imgs", "gts", "prev_pred", "segs"] {
            let Some(a) = get(key) else { continue };
            if a.shape.len() != 3 {
                return Err(IoError::npy(
                    path,
                    key,
                    format!("expected a 3-D (D, H, W) array, found shape {:?}", a.shape),
                ));
            }
            let d = [a.shape[0], a.shape[1], a.shape[2]];
            match dims {
                None => dims = Some((d, key)),
                Some((ref_dims, ref_key)) if ref_dims != d => {
                    return Err(IoError::ShapeMismatch {
                        path: path.to_path_buf(),
                        key: key.to_string(),
                        found: d.to_vec(),
                        reference: ref_key.to_string(),
                        expected: ref_dims.to_vec(),
                    });
                }
                _ => {}
            }
        }
        let grid = dims.map(|(d, _)| d);
        let labels = |key: &str| -> Result<Option<Volume<u8>>> {
            match (get(key), grid) {
                (Some(a), Some(d)) => Ok(Some(
                    Volume::new(labels_from(path, key, a)?, d, vol_spacing)
                        .map_err(|e| IoError::npy(path, key, e.to_string()))?,
                )),
                _ => Ok(None),
            }
        };
        let imgs = match (get("imgs"), grid) {
            (Some(a), Some(d)) => Some(image_from(path, "imgs", a, d, vol_spacing)?),
            _ => None,
        };
        let case = ChallengeCase {
            imgs,
            gts: labels("gts")?,
            prev_pred: labels("prev_pred")?,
            segs: labels("segs")?,
            spacing,
            boxes: get("boxes").map(|a| parse_boxes(path, a)).transpose()?,
            clicks: get("clicks")
                .map(|a| parse_clicks(path, a, grid))
                .transpose()?,
            clicks_order: get("clicks_order")
                .map(|a| parse_order(path, a))
                .transpose()?,
            keys,
        };
        if let (Some(boxes), Some(d)) = (&case.boxes, grid) {
            for (i, b) in boxes.iter().enumerate() {
                let (lo, hi) = b.zyx_inclusive();
                let inside =
                    (0..3).all(|ax| 0 <= lo[ax] && lo[ax] <= hi[ax] && hi[ax] < d[ax] as i64);
                if !inside {
                    return Err(IoError::invalid(
                        path,
                        format!(
                            "`boxes`: box of class {} {lo:?}..={hi:?} is empty or outside the volume {d:?}",
                            i + 1
                        ),
                    ));
                }
            }
        }
        Ok(case)
    }

    /// The (D, H, W) shape of the case's arrays, if it has any.
    pub fn dims(&self) -> Option<[usize; 3]> {
        self.imgs
            .as_ref()
            .map(AnyVolume::dims)
            .or_else(|| self.gts.as_ref().map(|v| v.dims))
            .or_else(|| self.prev_pred.as_ref().map(|v| v.dims))
            .or_else(|| self.segs.as_ref().map(|v| v.dims))
    }

    /// Writes the case as numpy's `savez_compressed` would, in the key order it was read with
    /// (new keys after, in the evaluator's order `imgs, gts, spacing, clicks, clicks_order,
    /// prev_pred, boxes, segs`). `clicks_order` is `<U2` unless it holds a `None`, then an
    /// object array, exactly as `np.array` builds it. The file appears atomically.
    ///
    /// # Errors
    /// [`IoError::Os`] when the folder is not writable.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut arrays: Vec<(&str, NpyArray)> = Vec::new();
        let vol3 = |v: &Volume<u8>| NpyArray {
            shape: v.dims.to_vec(),
            data: NpyData::U8(v.data.clone()),
        };
        let order = [
            "imgs",
            "gts",
            "spacing",
            "clicks",
            "clicks_order",
            "prev_pred",
            "boxes",
            "segs",
        ];
        let mut keys: Vec<&str> = self
            .keys
            .iter()
            .map(String::as_str)
            .filter(|k| order.contains(k))
            .collect();
        for k in order {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for key in keys {
            let a = match key {
                "imgs" => self.imgs.as_ref().map(|v| v.to_npy()),
                "gts" => self.gts.as_ref().map(vol3),
                "prev_pred" => self.prev_pred.as_ref().map(vol3),
                "segs" => self.segs.as_ref().map(vol3),
                "spacing" => self.spacing.map(|s| NpyArray {
                    shape: vec![3],
                    data: NpyData::F64(s.to_vec()),
                }),
                "boxes" => self.boxes.as_ref().map(|b| NpyArray {
                    shape: vec![b.len()],
                    data: NpyData::Object(b.iter().map(|x| x.to_py()).collect()),
                }),
                "clicks" => self.clicks.as_ref().map(|c| NpyArray {
                    shape: vec![c.len()],
                    data: NpyData::Object(c.iter().map(ClassClicks::to_py).collect()),
                }),
                "clicks_order" => self
                    .clicks_order
                    .as_ref()
                    .map(|o| order_to_npy(path, o))
                    .transpose()?,
                _ => None,
            };
            if let Some(a) = a {
                arrays.push((key, a));
            }
        }
        let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(k, a)| (*k, a)).collect();
        write_npz(path, &refs)
    }
}

fn order_to_npy(path: &Path, o: &[Vec<Option<ClickKind>>]) -> Result<NpyArray> {
    let steps = o.first().map_or(0, Vec::len);
    if o.iter().any(|r| r.len() != steps) {
        return Err(IoError::invalid(
            path,
            "`clicks_order` rows must all have the same number of steps",
        ));
    }
    let shape = vec![o.len(), steps];
    let flat = o.iter().flatten();
    Ok(if o.iter().flatten().any(Option::is_none) {
        NpyArray {
            shape,
            data: NpyData::Object(
                flat.map(|c| c.map_or(PyValue::None, |k| PyValue::Str(k.as_str().into())))
                    .collect(),
            ),
        }
    } else {
        NpyArray {
            shape,
            data: NpyData::Str(
                flat.map(|c| c.map_or("", |k| k.as_str()).to_string())
                    .collect(),
            ),
        }
    })
}

/// Writes a prediction as the challenge expects: one key `segs`, `uint8` (D, H, W).
///
/// # Errors
/// As [`write_npz`].
pub fn write_segs(path: impl AsRef<Path>, segs: &Volume<u8>) -> Result<()> {
    let a = NpyArray {
        shape: segs.dims.to_vec(),
        data: NpyData::U8(segs.data.clone()),
    };
    write_npz(path, &[("segs", &a)])
}

impl AnyVolume {
    fn to_npy(&self) -> NpyArray {
        let shape = self.dims().to_vec();
        let data = match self {
            AnyVolume::U8(v) => NpyData::U8(v.data.clone()),
            AnyVolume::I16(v) => NpyData::I16(v.data.clone()),
            AnyVolume::I32(v) => NpyData::I32(v.data.clone()),
            AnyVolume::F32(v) => NpyData::F32(v.data.clone()),
            AnyVolume::F64(v) => NpyData::F64(v.data.clone()),
        };
        NpyArray { shape, data }
    }
}
