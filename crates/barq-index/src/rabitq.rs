//! RaBitQ residual codes with extended bits (Gao & Long, SIGMOD 2024 and 2025).
//!
//! A row `o` of cluster `c` is stored as its residual `r = o − c`: the residual is rotated by a
//! random orthogonal `P`, normalized to `v = P r / ‖r‖`, and each coordinate is written as a
//! `bits`-bit integer `u_d`, the point of the grid `y = u − (2^bits − 1)/2` whose direction is
//! closest to `v` (the best scale is searched per row, so no codebook is trained). For any
//! vector `x`, `⟨r, x⟩ ≈ ‖r‖ · ⟨y, P x⟩ / ⟨y, v⟩` — the RaBitQ estimator, unbiased with an error
//! that shrinks as `1/√dim` per bit. A query estimates
//!
//! ```text
//! ⟨o, q⟩ ≈ ⟨c, q⟩ + κ + α · ⟨y, P q⟩,   α = ‖r‖ / ⟨y, v⟩,   κ = ⟨r, c⟩ − α ⟨y, P c⟩
//! ```
//!
//! so that the only error left is that of `⟨r, q − c⟩`, which is small because `q − c` is short
//! for the clusters a query probes. Per row the code stores `α`, `κ` and `‖o‖²` (for `l2`) as
//! three `f32`s beside the packed integers.
//!
//! Packing: `per = 8 / bits` coordinates share a byte; byte `j` holds coordinate
//! `j + p · (padded / per)` in bits `p·bits .. (p+1)·bits` for `p` in `0..per`, so unpacking is
//! a shift and a mask over contiguous bytes, which vectorizes.

use std::sync::Arc;

use crate::rotation::Rotation;

/// Bits per coordinate the format allows.
pub const ALLOWED_BITS: [u8; 4] = [1, 2, 4, 8];
/// Per-row `f32` factors: `α`, `κ`, `‖o‖²`.
pub const FACTORS: usize = 3;
/// Scale candidates tried per row when searching the best grid point.
const SCALE_STEPS: usize = 12;

/// Encodes residuals and prepares queries for one `(dim, bits, seed)`.
#[derive(Debug, Clone)]
pub struct Quantizer {
    bits: u8,
    rotation: Arc<Rotation>,
}

/// Coordinates of the rotated space: `dim` rounded up to a multiple of 64, so that every packing
/// has whole bytes and the scan loops run over full vector registers.
pub fn padded_dim(dim: usize) -> usize {
    dim.div_ceil(64) * 64
}

impl Quantizer {
    /// A quantizer for vectors of `dim` coordinates with `bits` per coordinate.
    pub fn new(dim: usize, bits: u8, seed: u64) -> Quantizer {
        assert!(
            ALLOWED_BITS.contains(&bits),
            "unsupported code width {bits}"
        );
        Quantizer {
            bits,
            rotation: Rotation::shared(dim, padded_dim(dim), seed),
        }
    }

    /// Bits per coordinate.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Coordinates of the input space.
    pub fn dim(&self) -> usize {
        self.rotation.dim()
    }

    /// Bytes of one row's packed code.
    pub fn code_len(&self) -> usize {
        self.rotation.padded() * usize::from(self.bits) / 8
    }

    /// The rotation.
    pub fn rotation(&self) -> &Rotation {
        &self.rotation
    }

    /// `P · x`, padded.
    pub fn rotate(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rotation.padded()];
        self.rotation.apply(x, &mut out);
        out
    }

    /// Encode row `o` of the cluster with centroid `c` (and rotated centroid `pc =`
    /// [`rotate`](Self::rotate)`(c)`, the same for every row of the cluster) into `code`
    /// (`code_len` bytes); returns the row's factors `[α, κ, ‖o‖²]`.
    pub fn encode(&self, o: &[f32], c: &[f32], pc: &[f32], code: &mut [u8]) -> [f32; FACTORS] {
        let dim = self.dim();
        let padded = self.rotation.padded();
        let norm_sq = barq_core::dot(o, o);
        let r: Vec<f32> = o.iter().zip(c).map(|(a, b)| a - b).collect();
        let r_norm = barq_core::norm(&r);
        code.fill(0);
        if r_norm <= f32::MIN_POSITIVE {
            // The row is its centroid: the estimate is exact with α = 0 and κ = 0.
            return [0.0, 0.0, norm_sq];
        }
        let mut v = vec![0.0f32; padded];
        self.rotation.apply(&r, &mut v);
        v.iter_mut().for_each(|x| *x /= r_norm);
        let u = best_grid_point(&v, self.bits);
        let h = half_range(self.bits);
        let y_dot_v: f32 = u.iter().zip(&v).map(|(u, v)| (f32::from(*u) - h) * v).sum();
        let alpha = r_norm / y_dot_v;
        let y_dot_pc: f32 = u.iter().zip(pc).map(|(u, p)| (f32::from(*u) - h) * p).sum();
        let kappa = barq_core::dot(&r, c) - alpha * y_dot_pc;
        pack(&u, self.bits, code);
        debug_assert_eq!(r.len(), dim);
        [alpha, kappa, norm_sq]
    }

    /// Prepare a query (in the indexed space) for scanning codes.
    pub fn prepare(&self, q: &[f32]) -> QueryCode {
        let padded = self.rotation.padded();
        let mut pq = vec![0.0f32; padded];
        self.rotation.apply(q, &mut pq);
        let max = pq.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        // 2047 keeps every partial sum of u (≤ 255) × q (≤ 2047) × 1024 coordinates in an i32.
        let scale = if max > 0.0 { max / 2047.0 } else { 1.0 };
        let ints: Vec<i16> = pq.iter().map(|x| (x / scale).round() as i16).collect();
        let sum_int: i64 = ints.iter().map(|x| i64::from(*x)).sum();
        QueryCode {
            bits: self.bits,
            ints,
            scale,
            offset: half_range(self.bits) * sum_int as f32 * scale,
        }
    }
}

/// `(2^bits − 1) / 2`: the grid is centred on zero.
fn half_range(bits: u8) -> f32 {
    ((1u32 << bits) - 1) as f32 / 2.0
}

/// Lanes of the partial sums in [`best_grid_point`] (one 256-bit register of `f32`, two of
/// SSE2): independent accumulators let the loop vectorize without reordering any one sum.
const LANES: usize = 8;

/// The integer point `u` whose centred grid vector `y = u − half` points closest to `v`: scales
/// `t` of `v` are tried (coarse steps up to the scale where the largest coordinate clamps, then
/// a finer pass around the best), each scored in one pass over `v` without being materialised;
/// only the winner is.
fn best_grid_point(v: &[f32], bits: u8) -> Vec<u8> {
    let top = ((1u32 << bits) - 1) as f32;
    let shift = (1u32 << (bits - 1)) as f32;
    let h = half_range(bits);
    // clamp(floor(t·x + 2^(bits−1))) as an integer. Truncation of a value in [0, top] is its
    // floor; the unchecked conversion is one vector instruction, where `as` (saturating) is a
    // scalar sequence per lane.
    let grid = |t: f32, x: f32| -> i32 {
        // SAFETY: `max(0.0)` maps NaN to 0 and `min(top)` bounds the value, so it is finite and
        // within 0..=255, representable in an i32.
        unsafe { (t * x + shift).max(0.0).min(top).to_int_unchecked::<i32>() }
    };
    let lanes_sum = |a: [f32; LANES]| a.iter().sum::<f32>();
    let mut sum_v = [0.0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            sum_v[l] += c[l];
        }
    }
    let tail = chunks.remainder();
    let sum_v = lanes_sum(sum_v) + tail.iter().sum::<f32>();
    let n = v.len() as f32;
    // cos(y, v) up to ‖v‖, from ⟨u, v⟩, ‖u‖² and Σu: ⟨y, v⟩ = ⟨u, v⟩ − h·Σv and
    // ‖y‖² = ‖u‖² − 2h·Σu + n·h².
    let score = |t: f32| {
        let (mut uv, mut uu, mut us) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
        for c in v.chunks_exact(LANES) {
            for l in 0..LANES {
                let u = grid(t, c[l]) as f32;
                uv[l] += u * c[l];
                uu[l] += u * u;
                us[l] += u;
            }
        }
        let (mut uv, mut uu, mut us) = (lanes_sum(uv), lanes_sum(uu), lanes_sum(us));
        for &x in tail {
            let u = grid(t, x) as f32;
            uv += u * x;
            uu += u * u;
            us += u;
        }
        let dot = uv - h * sum_v;
        let norm = uu - 2.0 * h * us + n * h * h;
        if norm > 0.0 { dot / norm.sqrt() } else { -1.0 }
    };
    let quantize = |t: f32| -> Vec<u8> { v.iter().map(|&x| grid(t, x) as u8).collect() };
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if bits == 1 || max == 0.0 {
        return quantize(1.0);
    }
    // Beyond t_max the largest coordinate clamps; the best scale lies below it.
    let t_max = (h + 0.5) / max;
    let mut best_cos = score(1.0);
    // The refinement is centred on the best coarse scale (0 while t = 1 is unbeaten).
    let (mut best_t, mut winner) = (0.0f32, 1.0f32);
    let mut try_t = |t: f32, best_t: &mut f32| {
        let c = score(t);
        if c > best_cos {
            best_cos = c;
            *best_t = t;
            winner = t;
        }
    };
    for i in 1..=SCALE_STEPS {
        try_t(t_max * i as f32 / SCALE_STEPS as f32, &mut best_t);
    }
    // Refine around the best coarse scale.
    let step = t_max / SCALE_STEPS as f32;
    for i in 1..SCALE_STEPS / 2 {
        let d = step * i as f32 / (SCALE_STEPS / 2) as f32;
        let around = best_t;
        try_t(around - d, &mut best_t);
        try_t(around + d, &mut best_t);
    }
    quantize(winner)
}

fn pack(u: &[u8], bits: u8, code: &mut [u8]) {
    let per = 8 / usize::from(bits);
    let stride = u.len() / per;
    for (j, byte) in code.iter_mut().enumerate() {
        let mut b = 0u8;
        for p in 0..per {
            b |= u[j + p * stride] << (p * usize::from(bits));
        }
        *byte = b;
    }
}

/// A query prepared for one quantizer: its rotated coordinates as integers.
#[derive(Debug, Clone)]
pub struct QueryCode {
    bits: u8,
    ints: Vec<i16>,
    scale: f32,
    /// `half · Σ (P q)_d`, subtracted from `Σ u_d (P q)_d` to give `⟨y, P q⟩`.
    offset: f32,
}

impl QueryCode {
    /// `⟨y, P q⟩` for one packed code.
    #[inline]
    pub fn y_dot(&self, code: &[u8]) -> f32 {
        let raw = match self.bits {
            1 => dot_packed::<1>(code, &self.ints),
            2 => dot_packed::<2>(code, &self.ints),
            4 => dot_packed::<4>(code, &self.ints),
            _ => dot_packed::<8>(code, &self.ints),
        };
        raw as f32 * self.scale - self.offset
    }

    /// The estimate of `⟨o, q⟩` for a row with `factors`, in a cluster whose centroid has
    /// inner product `c_dot_q` with the query.
    #[inline]
    pub fn estimate_dot(&self, code: &[u8], factors: &[f32], c_dot_q: f32) -> f32 {
        c_dot_q + factors[1] + factors[0] * self.y_dot(code)
    }
}

/// `Σ u_d · q_d` over a packed code.
#[inline]
fn dot_packed<const BITS: usize>(code: &[u8], q: &[i16]) -> i32 {
    let per = 8 / BITS;
    let stride = code.len();
    let mask = ((1u32 << BITS) - 1) as u8;
    let mut acc = 0i32;
    for p in 0..per {
        let qs = &q[p * stride..(p + 1) * stride];
        let shift = p * BITS;
        let mut part = 0i32;
        for (b, x) in code.iter().zip(qs) {
            part += i32::from((b >> shift) & mask) * i32::from(*x);
        }
        acc += part;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn gaussianish(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
        // Sum of 4 uniforms: close enough to a gaussian for an estimator test.
        (0..n)
            .map(|_| {
                (0..4)
                    .map(|_| (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32 - 0.5)
                    .sum::<f32>()
            })
            .collect()
    }

    /// The cosine between the centred grid point `u` and `v`.
    fn grid_cosine(u: &[u8], v: &[f32], bits: u8) -> f32 {
        let h = half_range(bits);
        let y: Vec<f32> = u.iter().map(|&u| f32::from(u) - h).collect();
        barq_core::dot(&y, v) / barq_core::norm(&y) / barq_core::norm(v)
    }

    #[test]
    fn the_grid_point_is_at_least_as_close_as_every_scale_it_tries() {
        // The fused search scores each scale from sums; here every candidate point is
        // materialised and its cosine computed directly.
        let mut rng = SplitMix64::new(5);
        for bits in [2u8, 4, 8] {
            let top = (1u32 << bits) - 1;
            let shift = (1u32 << (bits - 1)) as f32;
            for dim in [13, 64, 128, 384] {
                for _ in 0..50 {
                    let v = gaussianish(&mut rng, dim);
                    let got = grid_cosine(&best_grid_point(&v, bits), &v, bits);
                    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                    let t_max = (half_range(bits) + 0.5) / max;
                    for i in 1..=SCALE_STEPS {
                        let t = t_max * i as f32 / SCALE_STEPS as f32;
                        let u: Vec<u8> = v
                            .iter()
                            .map(|x| ((t * x + shift).max(0.0) as u32).min(top) as u8)
                            .collect();
                        let c = grid_cosine(&u, &v, bits);
                        assert!(
                            got >= c - 1e-5,
                            "bits {bits} dim {dim}: {got} < {c} at t {t}"
                        );
                    }
                    assert!(got > 0.5, "bits {bits} dim {dim}: cosine {got}");
                }
            }
        }
    }

    #[test]
    fn estimates_are_close_and_tighter_with_more_bits() {
        let dim = 128;
        let mut rng = SplitMix64::new(5);
        let c = gaussianish(&mut rng, dim);
        let mut errors = Vec::new();
        let mut spread = 0.0f64;
        for bits in [1u8, 2, 4, 8] {
            let qz = Quantizer::new(dim, bits, 77);
            let mut code = vec![0u8; qz.code_len()];
            let mut err = 0.0f64;
            let mut rng = SplitMix64::new(9);
            for _ in 0..200 {
                let o: Vec<f32> = c
                    .iter()
                    .zip(gaussianish(&mut rng, dim))
                    .map(|(a, b)| a + b)
                    .collect();
                let q: Vec<f32> = c
                    .iter()
                    .zip(gaussianish(&mut rng, dim))
                    .map(|(a, b)| a + b)
                    .collect();
                let f = qz.encode(&o, &c, &qz.rotate(&c), &mut code);
                let qc = qz.prepare(&q);
                let est = qc.estimate_dot(&code, &f, barq_core::dot(&c, &q));
                let exact = barq_core::dot(&o, &q);
                err += f64::from((est - exact).abs());
                if bits == 1 {
                    let r: Vec<f32> = o.iter().zip(&c).map(|(a, b)| a - b).collect();
                    let qc: Vec<f32> = q.iter().zip(&c).map(|(a, b)| a - b).collect();
                    spread += f64::from(barq_core::dot(&r, &qc).abs()) / 200.0;
                }
            }
            errors.push(err / 200.0);
        }
        // The estimate must be well inside the spread of the term it estimates, ⟨r, q − c⟩,
        // and each extra bit must help.
        assert!(errors[0] < spread, "errors {errors:?}, spread {spread}");
        assert!(
            errors[2] < 0.12 * spread,
            "errors {errors:?}, spread {spread}"
        );
        assert!(
            errors.windows(2).all(|w| w[1] < w[0]),
            "errors do not shrink with bits: {errors:?}"
        );
    }

    #[test]
    fn a_row_equal_to_its_centroid_is_exact() {
        let qz = Quantizer::new(10, 4, 1);
        let c = vec![0.5f32; 10];
        let mut code = vec![0u8; qz.code_len()];
        let f = qz.encode(&c, &c, &qz.rotate(&c), &mut code);
        let q: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let qc = qz.prepare(&q);
        let est = qc.estimate_dot(&code, &f, barq_core::dot(&c, &q));
        assert!((est - barq_core::dot(&c, &q)).abs() < 1e-3);
    }

    #[test]
    fn packing_round_trips() {
        for bits in ALLOWED_BITS {
            let n = 64;
            let mask = (1u32 << bits) - 1;
            let u: Vec<u8> = (0..n as u32).map(|i| ((i * 7) & mask) as u8).collect();
            let mut code = vec![0u8; n * usize::from(bits) / 8];
            pack(&u, bits, &mut code);
            let q: Vec<i16> = (0..n).map(|i| i as i16 - 20).collect();
            let want: i32 = u
                .iter()
                .zip(&q)
                .map(|(a, b)| i32::from(*a) * i32::from(*b))
                .sum();
            let got = match bits {
                1 => dot_packed::<1>(&code, &q),
                2 => dot_packed::<2>(&code, &q),
                4 => dot_packed::<4>(&code, &q),
                _ => dot_packed::<8>(&code, &q),
            };
            assert_eq!(got, want, "bits {bits}");
        }
    }
}
