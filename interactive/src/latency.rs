//! A scripted interactive sequence with its latencies: what `segvol bench --interactive` runs
//! through an [`InteractiveSession`] (a box, three clicks, an undo), the numbers a viewer's user
//! waits for on each action.

use std::time::Instant;

use burn::tensor::backend::Backend;

use crate::session::{InteractiveSession, SessionError, VoxelBox};

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
    let mut out = Vec::new();
    let voxels = |s: &InteractiveSession<'_, B>| s.mask().iter().filter(|&&m| m > 0).count();
    let t = Instant::now();
    let u = s.set_box(lo, hi)?;
    out.push(TimedAction {
        action: "box".into(),
        wall_s: t.elapsed().as_secs_f64(),
        encode_s: u.encode_s,
        decode_s: u.decode_s,
        changed: u.changed,
        voxels: voxels(s),
    });
    for (p, fg) in script_clicks(lo, hi) {
        let t = Instant::now();
        let u = s.add_point(p, fg)?;
        out.push(TimedAction {
            action: format!(
                "{} click {},{},{}",
                if fg { "positive" } else { "negative" },
                p[0],
                p[1],
                p[2]
            ),
            wall_s: t.elapsed().as_secs_f64(),
            encode_s: u.encode_s,
            decode_s: u.decode_s,
            changed: u.changed,
            voxels: voxels(s),
        });
    }
    let t = Instant::now();
    let u = s.undo();
    out.push(TimedAction {
        action: "undo".into(),
        wall_s: t.elapsed().as_secs_f64(),
        encode_s: 0.0,
        decode_s: 0.0,
        changed: u.and_then(|u| u.changed),
        voxels: voxels(s),
    });
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
