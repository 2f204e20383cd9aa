//! `segvol info PATH [--json]`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use segvol_io::npy::{NpyArray, NpyData};
use segvol_io::{AnyVolume, ChallengeCase, FileKind, Volume, read_image};
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A .nii, .nii.gz, .npy or challenge .npz file, or DICOM (a folder, DICOMDIR or .dcm):
    /// its series are listed, and the one picked (the only image series, or --series) read.
    pub path: PathBuf,
    /// Which DICOM series to read: its number in the listing (from 1) or its UID.
    #[arg(long)]
    pub series: Option<segvol_io::dicom::SeriesPick>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// nibabel's `aff2axcodes`: for each voxel axis (x, y, z) the world direction it points to.
fn orientation(affine: &[[f64; 4]; 4]) -> String {
    let names = [('L', 'R'), ('P', 'A'), ('I', 'S')];
    (0..3)
        .map(|col| {
            let (row, v) = (0..3)
                .map(|r| (r, affine[r][col]))
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap_or((col, 1.0));
            if v >= 0.0 { names[row].1 } else { names[row].0 }
        })
        .collect()
}

/// Label values present with voxel counts, when the volume looks like a label map
/// (integer values in 0..=255); `None` for an intensity image.
fn labels_of(v: &AnyVolume) -> Option<Vec<(u8, u64)>> {
    let labels = match v {
        AnyVolume::U8(u) => u.clone(),
        AnyVolume::F32(_) | AnyVolume::F64(_) | AnyVolume::I16(_) | AnyVolume::I32(_) => {
            v.to_labels().ok()?
        }
    };
    let present = labels.labels_present();
    // An image with many distinct grey values is not a label map.
    (present.len() <= 64).then_some(present)
}

fn volume_json(v: &AnyVolume) -> Value {
    let (lo, hi) = v.min_max().unwrap_or((f64::NAN, f64::NAN));
    json!({
        "shape_zyx": v.dims(),
        "dtype": v.dtype().to_string(),
        "spacing_zyx_mm": v.spacing(),
        "orientation": orientation(&v.affine()),
        "affine": v.affine(),
        "min": lo,
        "max": hi,
        "labels": labels_of(v).map(|l| l.iter().map(|(k, c)| json!({"label": k, "voxels": c})).collect::<Vec<_>>()),
    })
}

fn labels_json(v: &Volume<u8>) -> Value {
    Value::Array(
        v.labels_present()
            .iter()
            .map(|(l, c)| json!({"label": l, "voxels": c}))
            .collect(),
    )
}

fn fmt3<T: std::fmt::Display>(v: [T; 3]) -> String {
    format!("{} × {} × {}", v[0], v[1], v[2])
}

fn fmt_labels(l: &[(u8, u64)]) -> String {
    if l.is_empty() {
        return "none".into();
    }
    l.iter()
        .map(|(k, c)| format!("{k} ({c})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_volume(v: &AnyVolume) {
    let (lo, hi) = v.min_max().unwrap_or((f64::NAN, f64::NAN));
    out!("  shape (z,y,x)    {}", fmt3(v.dims()));
    out!("  dtype            {}", v.dtype());
    let s = v.spacing();
    out!(
        "  spacing (z,y,x)  {} mm",
        fmt3(s.map(|x| {
            format!("{x:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        }))
    );
    out!("  orientation      {}", orientation(&v.affine()));
    let a = v.affine();
    out!(
        "  origin (x,y,z)   {:.3}, {:.3}, {:.3} mm",
        a[0][3],
        a[1][3],
        a[2][3]
    );
    out!("  range            {lo} .. {hi}");
    match labels_of(v) {
        Some(l) => out!("  labels (voxels)  {}", fmt_labels(&l)),
        None => out!("  labels           (intensity image)"),
    }
}

fn npy_summary(a: &NpyArray) -> String {
    format!("{} {:?}", a.dtype_name(), a.shape)
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let path = &args.path;
    match FileKind::of(path)? {
        FileKind::Dicom => dicom_info(args)?,
        FileKind::Nifti | FileKind::Npy => {
            let v = read_image(path)?;
            if args.json {
                let mut j = volume_json(&v);
                j["path"] = json!(path);
                j["format"] = json!(if FileKind::of(path)? == FileKind::Nifti {
                    "nifti"
                } else {
                    "npy"
                });
                out!("{}", serde_json::to_string_pretty(&j)?);
            } else {
                out!("{}", path.display());
                print_volume(&v);
            }
        }
        FileKind::Npz => {
            let members = segvol_io::read_npz(path)?;
            let case = ChallengeCase::read(path)?;
            if args.json {
                let keys: Vec<Value> = members
                    .iter()
                    .map(|(k, a)| json!({"key": k, "dtype": a.dtype_name(), "shape": a.shape}))
                    .collect();
                let boxes = case.boxes.as_ref().map(|b| {
                    b.iter()
                        .map(|b| {
                            let (lo, hi) = b.zyx_inclusive();
                            json!({"zyx_min": lo, "zyx_max": hi, "z_mid": b.z_mid})
                        })
                        .collect::<Vec<_>>()
                });
                let clicks = case.clicks.as_ref().map(|c| {
                    c.iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let order =
                                case.clicks_order.as_ref().and_then(|o| o.get(i)).map(|r| {
                                    r.iter().map(|k| k.map(|k| k.as_str())).collect::<Vec<_>>()
                                });
                            json!({"class": i + 1, "fg": c.fg, "bg": c.bg, "order": order})
                        })
                        .collect::<Vec<_>>()
                });
                let j = json!({
                    "path": path,
                    "format": "npz",
                    "keys": keys,
                    "shape_zyx": case.dims(),
                    "spacing_as_stored": case.spacing,
                    "imgs": case.imgs.as_ref().map(volume_json),
                    "gts_labels": case.gts.as_ref().map(labels_json),
                    "prev_pred_labels": case.prev_pred.as_ref().map(labels_json),
                    "segs_labels": case.segs.as_ref().map(labels_json),
                    "boxes": boxes,
                    "clicks": clicks,
                });
                out!("{}", serde_json::to_string_pretty(&j)?);
                return Ok(());
            }
            out!("{}  (challenge npz)", path.display());
            out!(
                "  keys             {}",
                members
                    .iter()
                    .map(|(k, a)| format!("{k}: {}", npy_summary(a)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(d) = case.dims() {
                out!("  shape (z,y,x)    {}", fmt3(d));
            }
            if let Some(s) = case.spacing {
                out!(
                    "  spacing          {} mm (as stored; the evaluator pairs it with z,y,x)",
                    fmt3(s)
                );
            }
            if let Some(img) = &case.imgs {
                let (lo, hi) = img.min_max().unwrap_or((f64::NAN, f64::NAN));
                out!("  imgs             {}, range {lo} .. {hi}", img.dtype());
            }
            for (name, v) in [
                ("gts", &case.gts),
                ("prev_pred", &case.prev_pred),
                ("segs", &case.segs),
            ] {
                if let Some(v) = v {
                    out!(
                        "  {name:<16} labels (voxels) {}",
                        fmt_labels(&v.labels_present())
                    );
                }
            }
            if let Some(boxes) = &case.boxes {
                out!("  boxes            {} (z,y,x inclusive)", boxes.len());
                for (i, b) in boxes.iter().enumerate() {
                    let (lo, hi) = b.zyx_inclusive();
                    out!(
                        "    class {:<3}      {lo:?} .. {hi:?}  z_mid {}",
                        i + 1,
                        b.z_mid
                    );
                }
            }
            if let Some(clicks) = &case.clicks {
                out!("  clicks           {} classes", clicks.len());
                for (i, c) in clicks.iter().enumerate() {
                    let order = case
                        .clicks_order
                        .as_ref()
                        .and_then(|o| o.get(i))
                        .map(|r| {
                            r.iter()
                                .map(|k| k.map_or("None", |k| k.as_str()))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    out!(
                        "    class {:<3}      fg {:?}  bg {:?}  order [{order}]",
                        i + 1,
                        c.fg,
                        c.bg
                    );
                }
            }
            let modelled = [
                "imgs",
                "gts",
                "spacing",
                "prev_pred",
                "segs",
                "boxes",
                "clicks",
                "clicks_order",
            ];
            for (k, a) in &members {
                if !modelled.contains(&k.as_str()) {
                    let extra = match &a.data {
                        NpyData::Object(_) => " (object array, not interpreted)",
                        _ => "",
                    };
                    out!("  {k:<16} {}{extra}", npy_summary(a));
                }
            }
        }
    }
    Ok(())
}

fn dicom_info(args: &InfoArgs) -> Result<()> {
    use segvol_io::dicom::{list_series, read_series};
    let path = &args.path;
    let list = list_series(path)?;
    let images = list.iter().filter(|s| s.is_image).count();
    let pick = args.series.clone().unwrap_or_default();
    // Read a series when one is picked or the folder has exactly one; list them all anyway.
    let read = if args.series.is_some() || images == 1 {
        Some(read_series(path, &pick)?)
    } else {
        None
    };
    if args.json {
        let series: Vec<Value> = list
            .iter()
            .map(|s| {
                json!({
                    "index": s.index, "uid": s.uid, "description": s.description,
                    "modality": s.modality, "number": s.number, "sop_class_uid": s.sop_class_uid,
                    "files": s.files, "frames": s.frames, "rows_cols": s.size, "is_image": s.is_image,
                })
            })
            .collect();
        let mut j = json!({"path": path, "format": "dicom", "series": series});
        if let Some(r) = &read {
            let mut v = volume_json(&r.volume);
            v["series_uid"] = json!(r.info.series_uid);
            v["sop_class_uid"] = json!(r.info.sop_class_uid);
            v["modality"] = json!(r.info.modality);
            v["frame_of_reference_uid"] = json!(r.info.frame_of_reference_uid);
            j["volume"] = v;
        }
        out!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    out!("{}  (DICOM, {} series)", path.display(), list.len());
    for s in &list {
        out!(
            "  {:>3}  {:<4} {:>11}  {:>4} frame(s)  {:<28} {}{}",
            s.index,
            s.modality,
            s.size
                .map_or_else(|| "no image".into(), |[r, c]| format!("{r}×{c}")),
            s.frames,
            format!("\"{}\"", s.description),
            s.uid,
            if s.is_image {
                ""
            } else {
                "  (not an image series)"
            }
        );
    }
    match &read {
        Some(r) => {
            out!(
                "series {} ({}, {} slices):",
                r.info.series_uid,
                r.info.modality,
                r.info.frames.len()
            );
            print_volume(&r.volume);
        }
        None if images > 1 => {
            out!("several image series: pick one with --series N (or --series UID)");
        }
        None => out!("no image series"),
    }
    Ok(())
}
