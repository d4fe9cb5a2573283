//! A random orthogonal rotation, derived from a seed.
//!
//! RaBitQ's error bound holds for a randomly rotated space: a rotation spreads a vector's
//! energy over every coordinate, so one bit (or a few) per coordinate describes it evenly. The
//! matrix is made from random signs by modified Gram–Schmidt in `f64`, using only operations
//! IEEE 754 rounds exactly, so every platform derives the same matrix from the same seed and a
//! segment stores the seed, not the matrix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::rng::SplitMix64;

/// An orthogonal `padded × padded` matrix applied to vectors of `dim <= padded` coordinates
/// (the missing coordinates are zeros).
#[derive(Debug)]
pub struct Rotation {
    dim: usize,
    padded: usize,
    /// Row-major; only the first `dim` columns of each row are kept (the rest multiply zeros).
    rows: Vec<f32>,
}

impl Rotation {
    /// The rotation for `(dim, padded, seed)`, built once per process and shared.
    pub fn shared(dim: usize, padded: usize, seed: u64) -> Arc<Rotation> {
        type Cache = Mutex<HashMap<(usize, usize, u64), Arc<Rotation>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry((dim, padded, seed))
                .or_insert_with(|| Arc::new(Rotation::new(dim, padded, seed))),
        )
    }

    fn new(dim: usize, padded: usize, seed: u64) -> Rotation {
        assert!(
            dim <= padded && padded > 0,
            "rotation of {dim} into {padded}"
        );
        let mut rng = SplitMix64::new(seed);
        let mut basis: Vec<Vec<f64>> = Vec::with_capacity(padded);
        while basis.len() < padded {
            let mut v: Vec<f64> = (0..padded)
                .map(|_| if rng.next_u64() >> 63 == 0 { 1.0 } else { -1.0 })
                .collect();
            for b in &basis {
                let p: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                for (x, y) in v.iter_mut().zip(b) {
                    *x -= p * y;
                }
            }
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            // A draw (nearly) inside the span found so far: draw again.
            if n < 1e-3 {
                continue;
            }
            v.iter_mut().for_each(|x| *x /= n);
            basis.push(v);
        }
        let mut rows = Vec::with_capacity(padded * dim);
        for b in &basis {
            rows.extend(b[..dim].iter().map(|x| *x as f32));
        }
        Rotation { dim, padded, rows }
    }

    /// Coordinates of the input space.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Coordinates of the rotated space.
    pub fn padded(&self) -> usize {
        self.padded
    }

    /// `out = R · x` (`x` has `dim` coordinates, `out` has `padded`).
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        debug_assert_eq!(x.len(), self.dim);
        debug_assert_eq!(out.len(), self.padded);
        for (o, row) in out.iter_mut().zip(self.rows.chunks_exact(self.dim)) {
            *o = barq_core::dot(row, x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_orthogonal_and_keeps_norms() {
        let r = Rotation::shared(20, 24, 42);
        let x: Vec<f32> = (0..20).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut y = vec![0.0; 24];
        r.apply(&x, &mut y);
        let nx: f32 = x.iter().map(|v| v * v).sum();
        let ny: f32 = y.iter().map(|v| v * v).sum();
        assert!((nx - ny).abs() < 1e-4 * nx, "{nx} vs {ny}");
        // Inner products are kept too.
        let z: Vec<f32> = (0..20).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut w = vec![0.0; 24];
        r.apply(&z, &mut w);
        let a: f32 = x.iter().zip(&z).map(|(p, q)| p * q).sum();
        let b: f32 = y.iter().zip(&w).map(|(p, q)| p * q).sum();
        assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
    }

    #[test]
    fn same_seed_same_matrix() {
        let a = Rotation::new(16, 16, 9);
        let b = Rotation::new(16, 16, 9);
        let c = Rotation::new(16, 16, 10);
        assert_eq!(a.rows, b.rows);
        assert_ne!(a.rows, c.rows);
    }
}
