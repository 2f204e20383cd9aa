//! Class-agnostic synthetic objects pasted into real training crops (issue 20): the model is
//! to learn "the object inside the box", not the 99 names of the training labels.
//!
//! In the spirit of SynthSeg and anatomix (random shapes with random appearance), written here
//! for the model grid because neither ships as a Rust crate: a smooth random shape
//! ([`Kind`]: a deformed ellipsoid, a curved tube, a thin curved plate, or a union of two
//! ellipsoids) replaces the label of a sample, and the image gets the object painted in with a
//! random contrast against what lies under it (at least [`MIN_CONTRAST`] of the crop's
//! spread, brighter or darker), a smooth random texture, white noise, an edge blurred over 0–1
//! voxel, and, for half of them, a smooth multiplicative bias field over the whole crop.
//!
//! Images are in the model's input range [0, 1] (`normalize_for_model`), so the result is
//! clamped to it. Every draw comes from the sample's random stream ([`Uniform`], which
//! `crate::data::Rng` implements): a sample is a function of its
//! seed, as every other sample is.

/// A uniform random stream in `[0, 1)` and the draws made from it (`crate::data::Rng`'s
/// `below`, `chance` and `range` are these). (A trait here
/// rather than `data::Rng` itself keeps `data` → `synth` the only direction between the two.)
pub trait Uniform {
    /// Uniform in `[0, 1)`.
    fn uniform(&mut self) -> f64;
    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
}

/// The shape families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ellipsoid, rotated, with a smooth radial deformation of up to ±25 %.
    Ellipsoid,
    /// A tube of varying radius around a quadratic Bézier curve.
    Tube,
    /// A thin curved plate (1–3 voxels thick), bounded by an ellipsoid.
    Plate,
    /// Two overlapping deformed ellipsoids.
    Union,
}

/// The smallest object kept (voxels); a smaller draw is drawn again.
pub const MIN_VOXELS: usize = 24;
/// The smallest contrast of the object's mean against the image under it, in units of the
/// crop's standard deviation (floored at 0.05 of the [0, 1] range).
pub const MIN_CONTRAST: f64 = 0.6;

type V3 = [f64; 3];

fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}

fn normal(rng: &mut dyn Uniform) -> f64 {
    // Box–Muller; `1 - u` keeps the logarithm finite.
    let u = 1.0 - rng.uniform();
    let v = rng.uniform();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn unit(rng: &mut dyn Uniform) -> V3 {
    loop {
        let v = [normal(rng), normal(rng), normal(rng)];
        let n = norm(v);
        if n > 1e-6 {
            return v.map(|x| x / n);
        }
    }
}

/// A random rotation: an orthonormal basis (rows).
fn basis(rng: &mut dyn Uniform) -> [V3; 3] {
    let a = unit(rng);
    let mut b = unit(rng);
    loop {
        let p = dot(a, b);
        let c = sub(b, a.map(|x| x * p));
        let n = norm(c);
        if n > 1e-3 {
            b = c.map(|x| x / n);
            break;
        }
        b = unit(rng);
    }
    let c = [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ];
    [a, b, c]
}

/// A smooth function on the unit sphere: a sum of three random plane waves.
struct Ripple {
    waves: Vec<(V3, f64, f64)>,
}

impl Ripple {
    fn new(rng: &mut dyn Uniform, amplitude: f64, freq: [f64; 2]) -> Self {
        let waves = (0..3)
            .map(|_| {
                let f = rng.range(freq[0], freq[1]);
                let k = unit(rng).map(|x| x * f);
                (k, rng.range(0.0, std::f64::consts::TAU), amplitude / 3.0)
            })
            .collect();
        Ripple { waves }
    }
    fn at(&self, p: V3) -> f64 {
        self.waves
            .iter()
            .map(|&(k, phase, a)| a * (dot(k, p) + phase).sin())
            .sum()
    }
}

/// A deformed, rotated ellipsoid in grid-relative coordinates (each axis divided by its
/// size, so an anisotropic grid keeps the fractions asked for): inside where
/// `|q| ≤ 1 + ripple(q̂)`, `q` the rotated offset divided by the radii.
struct Blob {
    centre: V3,
    scale: V3,
    axes: [V3; 3],
    radii: V3,
    ripple: Ripple,
}

impl Blob {
    /// `centre` in voxels, `rmax` in fractions of the grid, `dims` the grid.
    fn new(rng: &mut dyn Uniform, centre: V3, rmax: V3, dims: V3) -> Self {
        let radii = rmax.map(|r| rng.range(0.25, 1.0) * r);
        let amp = rng.range(0.0, 0.25);
        Blob {
            centre,
            scale: dims.map(|n| 1.0 / n.max(1.0)),
            axes: basis(rng),
            radii: radii.map(|r| r.max(1e-3)),
            ripple: Ripple::new(rng, amp, [1.0, 3.0]),
        }
    }
    fn inside(&self, p: V3) -> bool {
        let d = sub(p, self.centre);
        let rel = [0, 1, 2].map(|a| d[a] * self.scale[a]);
        let q = [0, 1, 2].map(|a| dot(self.axes[a], rel) / self.radii[a]);
        let r = norm(q);
        if r < 1e-9 {
            return true;
        }
        r <= 1.0 + self.ripple.at(q.map(|x| x / r))
    }
}

/// Draws a shape of `kind` on a `dims` grid (z, y, x).
pub fn shape(rng: &mut dyn Uniform, dims: [usize; 3], kind: Kind) -> Vec<bool> {
    let d = dims.map(|n| n as f64);
    let centre = |rng: &mut dyn Uniform| [0, 1, 2].map(|a| rng.range(0.25, 0.75) * d[a]);
    // The largest radii, as fractions of the grid: one size, then each axis up to ×2 thinner.
    let rmax = |rng: &mut dyn Uniform| {
        let f = rng.range(0.08, 0.35);
        [0, 1, 2].map(|_| f * rng.range(0.5, 1.0))
    };
    let n = dims.iter().product();
    let mut out = vec![false; n];
    let fill = |out: &mut Vec<bool>, f: &dyn Fn(V3) -> bool| {
        for z in 0..dims[0] {
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    if f([z as f64 + 0.5, y as f64 + 0.5, x as f64 + 0.5]) {
                        out[(z * dims[1] + y) * dims[2] + x] = true;
                    }
                }
            }
        }
    };
    match kind {
        Kind::Ellipsoid => {
            let c = centre(rng);
            let r = rmax(rng);
            let b = Blob::new(rng, c, r, d);
            fill(&mut out, &|p| b.inside(p));
        }
        Kind::Union => {
            let c = centre(rng);
            let r = rmax(rng);
            let a = Blob::new(rng, c, r, d);
            let off = unit(rng);
            let c2 = [0, 1, 2].map(|i| (c[i] + off[i] * a.radii[i] * d[i]).clamp(0.0, d[i]));
            let r2 = r.map(|x| x * rng.range(0.5, 1.0));
            let b = Blob::new(rng, c2, r2, d);
            fill(&mut out, &|p| a.inside(p) || b.inside(p));
        }
        Kind::Tube => {
            // A quadratic Bézier from one point to another through a bent middle, as 48
            // segments; the radius runs linearly from one end to the other.
            let p0 = centre(rng);
            let span = rng.range(0.3, 0.8);
            let dir = unit(rng);
            let p2 = [0, 1, 2].map(|a| (p0[a] + dir[a] * span * d[a]).clamp(0.0, d[a]));
            let bend = unit(rng);
            let p1 = [0, 1, 2].map(|a| (p0[a] + p2[a]) / 2.0 + bend[a] * 0.2 * d[a]);
            let pts: Vec<V3> = (0..=48)
                .map(|i| {
                    let t = f64::from(i) / 48.0;
                    [0, 1, 2].map(|a| {
                        (1.0 - t) * (1.0 - t) * p0[a] + 2.0 * (1.0 - t) * t * p1[a] + t * t * p2[a]
                    })
                })
                .collect();
            let (r0, r1) = (rng.range(1.2, 5.0), rng.range(1.2, 5.0));
            let reach = r0.max(r1);
            let lo =
                [0, 1, 2].map(|a| pts.iter().map(|p| p[a]).fold(f64::INFINITY, f64::min) - reach);
            let hi = [0, 1, 2]
                .map(|a| pts.iter().map(|p| p[a]).fold(f64::NEG_INFINITY, f64::max) + reach);
            fill(&mut out, &|p| {
                (0..3).all(|a| (lo[a]..=hi[a]).contains(&p[a]))
                    && pts.windows(2).enumerate().any(|(i, w)| {
                        let (a, b) = (w[0], w[1]);
                        let ab = sub(b, a);
                        let t = (dot(sub(p, a), ab) / dot(ab, ab).max(1e-12)).clamp(0.0, 1.0);
                        let q = [0, 1, 2].map(|k| a[k] + t * ab[k]);
                        let u = (i as f64 + t) / 48.0;
                        norm(sub(p, q)) <= r0 + (r1 - r0) * u
                    })
            });
        }
        Kind::Plate => {
            let c = centre(rng);
            let f = rng.range(0.2, 0.4);
            let bound = Blob::new(rng, c, [f; 3], d);
            let normal_v = unit(rng);
            let thick = rng.range(0.6, 1.6);
            let curve = rng.range(-0.02, 0.02);
            fill(&mut out, &|p| {
                let q = sub(p, c);
                let h = dot(q, normal_v) + curve * (dot(q, q) - dot(q, normal_v).powi(2));
                h.abs() <= thick && bound.inside(p)
            });
        }
    }
    out
}

/// Draws a shape of a random kind with at least [`MIN_VOXELS`] voxels (up to 8 tries; `None`
/// when every try came out smaller).
pub fn random_shape(rng: &mut dyn Uniform, dims: [usize; 3]) -> Option<Vec<bool>> {
    const KINDS: [Kind; 4] = [Kind::Ellipsoid, Kind::Tube, Kind::Plate, Kind::Union];
    (0..8).find_map(|_| {
        let kind = KINDS[rng.below(KINDS.len())];
        let m = shape(rng, dims, kind);
        (m.iter().filter(|&&v| v).count() >= MIN_VOXELS).then_some(m)
    })
}

fn mean_std(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (n, s) = v.clone().fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
    if n == 0 {
        return (0.0, 0.0);
    }
    let m = s / n as f64;
    let var = v.map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
    (m, var.sqrt())
}

/// The blend weight of the painted object: 1 on its voxels, softened outwards by a 3-tap
/// average along each axis with weight `soft` for each neighbour (0 = a hard edge). Blurred
/// both ways, a plate one voxel thick kept a third of its contrast; so the object's own
/// voxels keep the full weight.
fn blend_weights(mask: &[bool], dims: [usize; 3], soft: f32) -> Vec<f32> {
    let mut w: Vec<f32> = mask.iter().map(|&m| f32::from(u8::from(m))).collect();
    if soft <= 0.0 {
        return w;
    }
    let stride = [dims[1] * dims[2], dims[2], 1];
    for a in 0..3 {
        let src = w.clone();
        for (i, wi) in w.iter_mut().enumerate() {
            let c = (i / stride[a]) % dims[a];
            let lo = if c > 0 { src[i - stride[a]] } else { src[i] };
            let hi = if c + 1 < dims[a] {
                src[i + stride[a]]
            } else {
                src[i]
            };
            *wi = (1.0 - 2.0 * soft) * src[i] + soft * (lo + hi);
        }
    }
    for (wi, &m) in w.iter_mut().zip(mask) {
        if m {
            *wi = 1.0;
        }
    }
    w
}

/// Paints the object `mask` into `image` (both `dims`), as the module docs say.
pub fn paint(image: &mut [f32], mask: &[bool], dims: [usize; 3], rng: &mut dyn Uniform) {
    let (_, spread) = mean_std(image.iter().map(|&v| f64::from(v)));
    let spread = spread.max(0.05);
    let (under, _) = mean_std(
        image
            .iter()
            .zip(mask)
            .filter(|&(_, &m)| m)
            .map(|(&v, _)| f64::from(v)),
    );
    // Brighter or darker than what it covers, whichever has room in [0, 1] (a random side
    // when both do).
    let step = spread * rng.range(MIN_CONTRAST, 2.5);
    let up = under + step <= 1.0;
    let down = under - step >= 0.0;
    let level = match (up, down) {
        (true, true) if rng.chance(0.5) => under + step,
        (true, _) => under + step,
        (_, true) => under - step,
        // No room either way: the far end of the range.
        _ if under < 0.5 => 1.0,
        _ => 0.0,
    };
    let amp = rng.range(0.0, 0.3) * step;
    let texture = Ripple::new(rng, amp, [0.2, 1.2]);
    let noise = rng.range(0.0, 0.15) * step;
    let soft = rng.range(0.0, 0.33) as f32;
    let w = blend_weights(mask, dims, soft);
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                let i = (z * dims[1] + y) * dims[2] + x;
                if w[i] <= 0.0 {
                    continue;
                }
                let p = [z as f64, y as f64, x as f64];
                let obj = level + texture.at(p) + noise * normal(rng);
                let v = f64::from(w[i]) * obj + f64::from(1.0 - w[i]) * f64::from(image[i]);
                image[i] = v as f32;
            }
        }
    }
    if rng.chance(0.5) {
        let amp = rng.range(0.05, 0.2);
        let bias = Ripple::new(rng, amp, [0.02, 0.1]);
        for z in 0..dims[0] {
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    let i = (z * dims[1] + y) * dims[2] + x;
                    let f = 1.0 + bias.at([z as f64, y as f64, x as f64]);
                    image[i] = (f64::from(image[i]) * f) as f32;
                }
            }
        }
    }
    image.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test stream (splitmix64), independent of `crate::data`.
    struct Lcg(u64);

    impl Lcg {
        fn new(seed: u64) -> Self {
            Lcg(seed)
        }
    }

    impl Uniform for Lcg {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    const DIMS: [usize; 3] = [32, 64, 64];

    fn count(m: &[bool]) -> usize {
        m.iter().filter(|&&v| v).count()
    }

    #[test]
    fn every_kind_draws_a_bounded_object_and_repeats_with_its_seed() {
        for kind in [Kind::Ellipsoid, Kind::Tube, Kind::Plate, Kind::Union] {
            let mut sizes = Vec::new();
            for seed in 0..12 {
                let m = shape(&mut Lcg::new(seed), DIMS, kind);
                assert_eq!(m, shape(&mut Lcg::new(seed), DIMS, kind), "{kind:?} {seed}");
                sizes.push(count(&m));
            }
            let n: usize = DIMS.iter().product();
            // Objects, not the background: most draws are non-empty and none fills over half
            // the grid (the largest ellipsoid is 0.35 of each side times 1.25 of deformation,
            // (4/3)π·0.44³ ≈ 0.35 of the grid).
            assert!(
                sizes.iter().filter(|&&s| s >= MIN_VOXELS).count() >= 9,
                "{kind:?} {sizes:?}"
            );
            assert!(sizes.iter().all(|&s| s < n / 2), "{kind:?} {sizes:?}");
        }
    }

    #[test]
    fn a_plate_is_thin_and_a_tube_is_narrow() {
        // A plate is at most 2·1.6 voxels thick along its normal plus its bend: far fewer
        // voxels than the ellipsoid bounding it.
        for seed in 0..8 {
            let mut rng = Lcg::new(100 + seed);
            let m = shape(&mut rng, DIMS, Kind::Plate);
            let n: usize = DIMS.iter().product();
            assert!(count(&m) < n / 20, "plate {seed}: {}", count(&m));
            let t = shape(&mut Lcg::new(200 + seed), DIMS, Kind::Tube);
            // Radius ≤ 5 around a curve of length ≤ ~1.2·0.8·|grid| ≈ 75: π·25·75 ≈ 5,900.
            assert!(count(&t) < 8_000, "tube {seed}: {}", count(&t));
        }
    }

    /// The mask grown by one voxel along each axis (6-neighbourhood).
    fn dilate(m: &[bool], dims: [usize; 3]) -> Vec<bool> {
        let stride = [dims[1] * dims[2], dims[2], 1];
        (0..m.len())
            .map(|i| {
                m[i] || (0..3).any(|a| {
                    let c = (i / stride[a]) % dims[a];
                    (c > 0 && m[i - stride[a]]) || (c + 1 < dims[a] && m[i + stride[a]])
                })
            })
            .collect()
    }

    #[test]
    fn the_edge_softens_outwards_only() {
        // A plate one voxel thick at z = 4 of an 9×5×5 grid.
        let dims = [9, 5, 5];
        let mask: Vec<bool> = (0..225).map(|i| i / 25 == 4).collect();
        let w = blend_weights(&mask, dims, 0.25);
        for (i, &v) in w.iter().enumerate() {
            let z = i / 25;
            match z {
                4 => assert_eq!(v, 1.0, "object voxel {i}"),
                // Next to it: the z pass gives 0.25 (in-plane passes keep a constant plane).
                3 | 5 => assert!((v - 0.25).abs() < 1e-6, "edge voxel {i}: {v}"),
                _ => assert_eq!(v, 0.0, "far voxel {i}"),
            }
        }
        assert_eq!(
            blend_weights(&mask, dims, 0.0),
            mask.iter()
                .map(|&m| f32::from(u8::from(m)))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn painting_makes_the_object_stand_out_and_keeps_the_range() {
        for seed in 0..24u64 {
            let mut rng = Lcg::new(seed);
            // A real-looking background: a smooth ramp with noise in [0.2, 0.6].
            let n: usize = DIMS.iter().product();
            let mut img: Vec<f32> = (0..n)
                .map(|i| 0.2 + 0.4 * (i % 64) as f32 / 64.0 + 0.02 * (normal(&mut rng) as f32))
                .collect();
            let (_, spread) = mean_std(img.iter().map(|&v| f64::from(v)));
            let m = random_shape(&mut rng, DIMS).expect("a shape");
            paint(&mut img, &m, DIMS, &mut rng);
            assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
            // Against the shell two voxels out (past the softened edge), in the painted image:
            // the step is ≥ MIN_CONTRAST spreads; the texture's mean over the object can take
            // back up to 0.3 of it and the bias field (×0.8–1.2, smooth) a fifth of the rest,
            // so 0.5 of MIN_CONTRAST is a floor that holds; unpainted, the two means differ by
            // the ramp's slope over two voxels and the noise's mean (< 0.02).
            let d1 = dilate(&m, DIMS);
            let d2 = dilate(&d1, DIMS);
            let mean = |sel: &dyn Fn(usize) -> bool| {
                let (s, k) = (0..n)
                    .filter(|&i| sel(i))
                    .fold((0.0f64, 0usize), |(s, k), i| (s + f64::from(img[i]), k + 1));
                s / k.max(1) as f64
            };
            let inside = mean(&|i| m[i]);
            let shell = mean(&|i| d2[i] && !d1[i]);
            let contrast = (inside - shell).abs();
            assert!(
                contrast >= 0.5 * MIN_CONTRAST * spread.max(0.05),
                "seed {seed}: {contrast} (spread {spread})"
            );
        }
    }
}
