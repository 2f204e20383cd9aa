//! numpy's legacy `RandomState` (MT19937), enough to reproduce
//! `np.random.seed(s); np.random.choice(n)` bit for bit (CHALLENGE.md §5.3).

/// The Mersenne Twister MT19937 with numpy's legacy integer seeding (`init_genrand`).
///
/// # Examples
/// ```
/// use segvol_eval::rng::Mt19937;
/// let mut rng = Mt19937::new(42);
/// assert_eq!(rng.next_u32(), 1608637542); // numpy: RandomState(42).randint(0, 2**32, dtype=np.uint64)[0] stream
/// ```
#[derive(Clone)]
pub struct Mt19937 {
    mt: [u32; 624],
    index: usize,
}

impl Mt19937 {
    /// `init_genrand(seed)`, as `np.random.seed(seed)` for a seed below 2³².
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { mt, index: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.mt[i] = self.mt[(i + 397) % 624] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next tempered 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// numpy's legacy bounded integer in `[0, rng]` (`random_bounded_uint64` with masked
    /// rejection): 32-bit draws when `rng` fits in 32 bits, else 64-bit draws (high word first).
    pub fn bounded(&mut self, rng: u64) -> u64 {
        if rng == 0 {
            return 0;
        }
        let mut mask = rng;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        mask |= mask >> 32;
        if rng <= 0xffff_ffff {
            loop {
                let v = u64::from(self.next_u32()) & mask;
                if v <= rng {
                    return v;
                }
            }
        }
        loop {
            let hi = u64::from(self.next_u32());
            let lo = u64::from(self.next_u32());
            let v = ((hi << 32) | lo) & mask;
            if v <= rng {
                return v;
            }
        }
    }
}

/// `np.random.seed(seed); np.random.choice(n)` — an index in `0..n`; `n` must be positive.
///
/// # Panics
/// When `n == 0` (numpy raises `ValueError` too).
///
/// # Examples
/// ```
/// use segvol_eval::rng::numpy_choice;
/// // numpy 1.26 / 2.x legacy RandomState(42).choice(n):
/// assert_eq!(numpy_choice(42, 3), 2);
/// assert_eq!(numpy_choice(42, 12345), 7270);
/// ```
pub fn numpy_choice(seed: u32, n: usize) -> usize {
    assert!(n > 0, "choice from an empty set");
    Mt19937::new(seed).bounded(n as u64 - 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors of CHALLENGE.md §5.3, verified there against numpy's legacy RandomState.
    #[test]
    fn numpy_vectors() {
        let mut r = Mt19937::new(42);
        let first: Vec<u32> = (0..4).map(|_| r.next_u32()).collect();
        assert_eq!(first, [1608637542, 3421126067, 4083286876, 787846414]);
        let ns = [1, 2, 3, 4, 5, 7, 10, 17, 100, 1000, 12345];
        let want = [0, 0, 2, 2, 3, 6, 6, 6, 51, 102, 7270];
        for (n, w) in ns.iter().zip(want) {
            assert_eq!(numpy_choice(42, *n), w, "n = {n}");
        }
    }
}
