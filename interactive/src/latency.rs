//! A scripted interactive sequence with its latencies: what `segvol bench --interactive` runs
//! through an [`InteractiveSession`] (a box, three clicks, an undo), the numbers a viewer's user
//! waits for on each action.

use std::time::Instant;

use burn::tensor::backend::Backend;

use crate::session::{InteractiveSession, SessionError, Update, VoxelBox};

/// One timed action.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedAction {
    /// What it was (`box`, `positive click z,y,x`, …).
    pub action: String,
    /// Seconds the call took, all of it (encoding, decoding, correction, mask bookkeeping).
    pub wall_s: f64,
    /// Seconds of encoding within it (0 unless the image was encoded by this action).
    pub encode_s: f64,
    /// Seconds of decoding and correction within it.
    pub decode_s: f64,
    /// The box of the voxels it changed.
    pub changed: Option<VoxelBox>,
    /// Voxels of the object after it.
    pub voxels: usize,
}

/// The clicks the script makes inside the box `lo..=hi`, in order: positive at its centre,
/// negative a quarter of the way in from `lo`, positive three quarters of the way in. Fixed
/// places, not chosen from the mask: the script times the actions, whatever they change.
pub fn script_clicks(lo: [usize; 3], hi: [usize; 3]) -> [([usize; 3], bool); 3] {
    let at =
        |num: usize| -> [usize; 3] { std::array::from_fn(|a| lo[a] + (hi[a] - lo[a]) * num / 4) };
    [(at(2), true), (at(1), false), (at(3), true)]
}

/// Runs the script on `s` (a fresh session: its first action encodes the image): the 3-D box
/// `lo..=hi`, the three [`script_clicks`], one undo.
///
/// # Errors
/// A box outside the image; the model's error.
pub fn run_script<B: Backend>(
    s: &mut InteractiveSession<'_, B>,
    lo: [usize; 3],
    hi: [usize; 3],
) -> Result<Vec<TimedAction>, SessionError> {
    // Wall time is read first: the voxel count after it is not part of the action.
    let step = |action: String, t: Instant, u: Option<Update>, s: &InteractiveSession<'_, B>| {
        let wall_s = t.elapsed().as_secs_f64();
        TimedAction {
            action,
            wall_s,
            encode_s: u.as_ref().map_or(0.0, |u| u.encode_s),
            decode_s: u.as_ref().map_or(0.0, |u| u.decode_s),
            changed: u.and_then(|u| u.changed),
            voxels: s.mask().iter().filter(|&&m| m > 0).count(),
        }
    };
    let mut out = Vec::new();
    let t = Instant::now();
    let u = s.set_box(lo, hi)?;
    out.push(step("box".into(), t, Some(u), s));
    for (p, fg) in script_clicks(lo, hi) {
        let t = Instant::now();
        let u = s.add_point(p, fg)?;
        let what = if fg { "positive" } else { "negative" };
        out.push(step(
            format!("{what} click {},{},{}", p[0], p[1], p[2]),
            t,
            Some(u),
            s,
        ));
    }
    let t = Instant::now();
    let u = s.undo();
    out.push(step("undo".into(), t, u, s));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clicks_lie_inside_the_box_at_fixed_fractions() {
        let c = script_clicks([10, 20, 30], [18, 60, 70]);
        assert_eq!(c[0], ([14, 40, 50], true));
        assert_eq!(c[1], ([12, 30, 40], false));
        assert_eq!(c[2], ([16, 50, 60], true));
        // A one-voxel box: every click is that voxel.
        let c = script_clicks([5, 5, 5], [5, 5, 5]);
        assert!(c.iter().all(|(p, _)| *p == [5, 5, 5]));
    }
}
