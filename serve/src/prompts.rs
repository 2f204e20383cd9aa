//! Mapping the client's interactions onto SegVol's prompts: boxes by the reference rules, the
//! point a scribble or lasso stands for.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::Value;

use crate::api::{ApiError, x_meta};
use crate::nnia;

/// Rounds half to even, as Python's `round` (§3.11, §3.12).
pub(crate) fn round_even(v: f64) -> f64 {
    v.round_ties_even()
}

pub(crate) fn num(v: &Value) -> Result<f64, ApiError> {
    v.as_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| ApiError::bad(format!("{v} is not a finite number")))
}

/// An inclusive box and its one-voxel-thick axis, if any.
pub(crate) type ParsedBox = ([usize; 3], [usize; 3], Option<usize>);

/// The reference's box rules (§3.11): sizes on the raw values, then half-even rounding,
/// clipping to `[0, dim]` and widening a collapsed axis. Returns the inclusive box and the
/// axis that is one voxel thick (a 2-D box), if any.
pub(crate) fn parse_box(v: &Value, dims: [usize; 3]) -> Result<ParsedBox, ApiError> {
    let b = v
        .get("bbox_coords")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 3)
        .ok_or_else(|| ApiError::bad("`bbox_coords` must be [[x0,x1],[y0,y1],[z0,z1]]"))?;
    let mut raw = [[0f64; 2]; 3];
    for (a, r) in b.iter().enumerate() {
        let p = r
            .as_array()
            .filter(|p| p.len() == 2)
            .ok_or_else(|| ApiError::bad("`bbox_coords` must be [[x0,x1],[y0,y1],[z0,z1]]"))?;
        raw[a] = [num(&p[0])?, num(&p[1])?];
    }
    let sizes = raw.map(|r| r[1] - r[0]);
    if sizes.iter().any(|&s| s <= 0.0) {
        return Err(ApiError::bad(format!(
            "bounding box sizes {sizes:?} must be positive"
        )));
    }
    let thin = (0..3).find(|&a| sizes[a] == 1.0);
    let (mut lo, mut hi) = ([0usize; 3], [0usize; 3]);
    for a in 0..3 {
        let d = dims[a] as f64;
        let mut l = round_even(raw[a][0]).clamp(0.0, d);
        let mut u = round_even(raw[a][1]).clamp(0.0, d);
        if u <= l {
            if l <= 0.0 {
                l = 0.0;
                u = 1.0;
            } else {
                l = (u - 1.0).max(0.0);
                u = l + 1.0;
            }
        }
        lo[a] = l as usize;
        hi[a] = (u as usize).saturating_sub(1).min(dims[a] - 1);
    }
    Ok((lo, hi, thin))
}

/// A scribble or lasso mask (§3.13) placed in the image: the marked voxels.
pub(crate) fn marked(
    h: &HeaderMap,
    body: &Bytes,
    dims: [usize; 3],
) -> Result<(Value, Vec<[usize; 3]>), ApiError> {
    let meta = x_meta(h)?;
    let (lo, size) = match meta.get("interaction_bbox") {
        None | Some(Value::Null) => ([0usize; 3], dims),
        Some(b) => {
            let b = b
                .as_array()
                .filter(|a| a.len() == 3)
                .ok_or_else(|| ApiError::bad("`interaction_bbox` must have 3 dims"))?;
            let (mut lo, mut size) = ([0usize; 3], [0usize; 3]);
            for a in 0..3 {
                let p = b[a]
                    .as_array()
                    .filter(|p| p.len() == 2)
                    .ok_or_else(|| ApiError::bad("`interaction_bbox` must be [[x0,x1],…]"))?;
                let (l, u) = (num(&p[0])?, num(&p[1])?);
                if u - l <= 0.0 || l < 0.0 || u > dims[a] as f64 {
                    return Err(ApiError::bad(format!(
                        "`interaction_bbox` axis {a} [{l}, {u}) is empty or outside the image {dims:?}"
                    )));
                }
                lo[a] = l as usize;
                size[a] = (u - l) as usize;
            }
            (lo, size)
        }
    };
    let n: usize = size.iter().product();
    let arr = nnia::unpack(body, n.saturating_mul(8)).map_err(|e| ApiError::bad(e.to_string()))?;
    if arr.shape != size.to_vec() {
        return Err(ApiError::bad(format!(
            "mask shape {:?} differs from the box size {size:?}",
            arr.shape
        )));
    }
    let m = arr.to_marks();
    let pts = m
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(i, _)| {
            let p = [
                i / (size[1] * size[2]),
                (i / size[2]) % size[1],
                i % size[2],
            ];
            [lo[0] + p[0], lo[1] + p[1], lo[2] + p[2]]
        })
        .collect();
    Ok((meta, pts))
}

/// The marked voxel nearest the marked voxels' centroid (a point inside the mark).
pub(crate) fn central(pts: &[[usize; 3]]) -> Option<[usize; 3]> {
    let n = pts.len() as f64;
    let c = [0, 1, 2].map(|a| pts.iter().map(|p| p[a] as f64).sum::<f64>() / n);
    pts.iter().copied().min_by(|p, q| {
        let d = |p: &[usize; 3]| (0..3).map(|a| (p[a] as f64 - c[a]).powi(2)).sum::<f64>();
        d(p).total_cmp(&d(q))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn boxes_follow_the_reference_rules() {
        let dims = [40, 50, 30];
        let v = json!({"bbox_coords": [[10, 20], [5.0, 25.0], [7, 8]]});
        assert_eq!(
            parse_box(&v, dims).unwrap(),
            ([10, 5, 7], [19, 24, 7], Some(2))
        );
        // Half-to-even rounding, clipping, the collapsed upper edge widened (napari's +1).
        let v = json!({"bbox_coords": [[0.5, 2.5], [48, 51], [29, 30]]});
        assert_eq!(
            parse_box(&v, dims).unwrap(),
            ([0, 48, 29], [1, 49, 29], Some(2))
        );
        for bad in [
            json!({"bbox_coords": [[10, 10], [5, 25], [7, 8]]}),
            json!({"bbox_coords": [[10, 20], [5, 25]]}),
            json!({"bbox_coords": [[10, "a"], [5, 25], [7, 8]]}),
            json!({}),
        ] {
            assert!(parse_box(&bad, dims).is_err(), "{bad}");
        }
    }

    #[test]
    fn centre_of_a_mark_is_inside_it() {
        // An L shape: the centroid (1, 0.67) is not marked; the nearest marked voxel is.
        let pts = [[0, 0, 0], [1, 0, 0], [2, 0, 0], [2, 1, 0], [2, 2, 0]];
        let c = central(&pts).unwrap();
        assert!(pts.contains(&c));
        assert_eq!(central(&[]), None);
    }
}
