//! A small deterministic PRNG (xoshiro256++, seeded through SplitMix64) and the few
//! distributions the generator needs.
//!
//! The generator does not use `rand`'s `StdRng` or its distributions because their output may
//! change between `rand` releases; this one gives the same stream for a seed forever, so
//! fixtures generated from a seed stay reproducible. [`rand::RngCore`] is implemented so the
//! usual `rand` API (`rng.random::<u128>()`) works on it too.

use rand::RngCore;

/// xoshiro256++ (Blackman & Vigna), public domain reference algorithm.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed`; every seed (0 included) gives a distinct, valid state.
    pub fn seed_from(seed: u64) -> Self {
        let mut sm = seed;
        let mut s = [0u64; 4];
        for v in &mut s {
            *v = splitmix64(&mut sm);
        }
        if s == [0; 4] {
            s[0] = 1; // the one state xoshiro cannot leave
        }
        Rng { s }
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let result = self.s[0]
            .wrapping_add(self.s[3])
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform in `0..n` (Lemire's multiply-shift, bias below 2^-64 · n); 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let width = hi.abs_diff(lo).saturating_add(1);
        lo.wrapping_add(self.below(width) as i64)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// 128 random bits.
    pub fn u128(&mut self) -> u128 {
        let lo = u128::from(self.next());
        let hi = u128::from(self.next());
        (hi << 64) | lo
    }

    /// Standard normal (Box–Muller, one value per call so the stream stays simple).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64(); // (0, 1]
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and log-space standard deviation.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// A Zipf-like rank in `0..n`: a bounded continuous power law with exponent `s`, floored.
    /// Rank 0 is the most likely. O(1), no tables, so `n` may be large. 0 when `n == 0`.
    pub fn zipf(&mut self, n: u64, s: f64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let u = self.f64();
        let top = n as f64 + 1.0;
        let x = if (s - 1.0).abs() < 1e-9 {
            top.powf(u)
        } else {
            let a = 1.0 - s;
            ((top.powf(a) - 1.0) * u + 1.0).powf(1.0 / a)
        };
        ((x.floor() as u64).saturating_sub(1)).min(n - 1)
    }

    /// An index drawn with probability proportional to `weights` (non-negative, not all zero;
    /// otherwise 0).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return 0;
        }
        let mut target = self.f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if target < *w {
                return i;
            }
            target -= w;
        }
        weights.len().saturating_sub(1)
    }

    /// A uniformly chosen element of a non-empty constant array.
    pub fn pick<'a, T, const N: usize>(&mut self, items: &'a [T; N]) -> &'a T {
        const { assert!(N > 0) };
        &items[self.below(N as u64) as usize]
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.next()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_stream_is_stable() {
        // Pinned (computed independently from the reference algorithm) so that fixtures
        // generated from a seed never silently change.
        let mut r = Rng::seed_from(42);
        let first: Vec<u64> = (0..3).map(|_| r.next()).collect();
        assert_eq!(
            first,
            [
                0xd076_4d4f_4476_689f,
                0x519e_4174_576f_3791,
                0xfbe0_7cfb_0c24_ed8c
            ]
        );
        let mut other = Rng::seed_from(43);
        assert_ne!(first[0], other.next());
    }

    #[test]
    fn ranges() {
        let mut r = Rng::seed_from(1);
        for _ in 0..10_000 {
            let f = r.f64();
            assert!((0.0..1.0).contains(&f));
            assert!(r.below(7) < 7);
            let i = r.int(-3, 3);
            assert!((-3..=3).contains(&i));
            assert!(r.zipf(1000, 1.1) < 1000);
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.zipf(0, 1.0), 0);
        assert_eq!(r.int(5, 5), 5);
        assert_eq!(r.weighted(&[]), 0);
        assert_eq!(r.weighted(&[0.0, 0.0]), 0);
    }

    #[test]
    fn zipf_is_skewed() {
        let mut r = Rng::seed_from(7);
        let n = 20_000;
        let top = (0..n).filter(|_| r.zipf(1000, 1.1) == 0).count();
        // Rank 0 is by far the most common (about 20 % for s = 1.1, n = 1000).
        assert!(top > n / 10 && top < n / 2, "{top}");
    }

    #[test]
    fn lognormal_median() {
        let mut r = Rng::seed_from(3);
        let mut v: Vec<f64> = (0..20_001).map(|_| r.lognormal(800.0, 1.2)).collect();
        v.sort_by(f64::total_cmp);
        let median = v[10_000];
        assert!((700.0..900.0).contains(&median), "{median}");
    }
}
