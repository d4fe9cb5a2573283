//! Distance kernels for exact search.
//!
//! The bodies are plain Rust written so that LLVM vectorizes them: 32 independent lanes of
//! accumulators (four AVX registers) over `chunks_exact`, no bounds checks in the loop. On
//! x86-64 the same bodies are compiled a second time with AVX2 and FMA enabled and picked at run
//! time, so one binary runs near memory bandwidth on modern CPUs and still runs on old ones.
//! Every tier and every code path uses the same kernel, so a query's results do not depend on
//! where the data lives.

use std::sync::OnceLock;

use crate::Metric;

const LANES: usize = 32;

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn l2_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        tail += d * d;
    }
    acc.iter().sum::<f32>() + tail
}

/// The two kernels, as function pointers chosen once per process.
#[derive(Debug, Clone, Copy)]
struct Kernels {
    dot: fn(&[f32], &[f32]) -> f32,
    l2: fn(&[f32], &[f32]) -> f32,
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

fn l2_portable(a: &[f32], b: &[f32]) -> f32 {
    l2_body(a, b)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::dot_body(a, b)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::l2_body(a, b)
    }

    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only selected after `is_x86_feature_detected!("avx2")` and `("fma")`.
        unsafe { dot_avx2(a, b) }
    }

    pub(super) fn l2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only selected after `is_x86_feature_detected!("avx2")` and `("fma")`.
        unsafe { l2_avx2(a, b) }
    }
}

fn kernels() -> Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Kernels {
                dot: avx2::dot,
                l2: avx2::l2,
            };
        }
        Kernels {
            dot: dot_portable,
            l2: l2_portable,
        }
    })
}

/// Inner product of `a` and `b` (over the shorter length).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// Squared Euclidean distance between `a` and `b` (over the shorter length).
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2)(a, b)
}

/// Euclidean norm of `a`.
pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// A query prepared for one metric: scores rows as a *rank key* where higher is always better,
/// and turns a rank key back into the user-facing score.
#[derive(Debug, Clone)]
pub struct Kernel<'q> {
    metric: Metric,
    query: &'q [f32],
    query_norm: f32,
    k: Kernels,
}

impl<'q> Kernel<'q> {
    /// Prepare `query` for `metric`.
    pub fn new(metric: Metric, query: &'q [f32]) -> Self {
        Kernel {
            metric,
            query,
            query_norm: norm(query),
            k: kernels(),
        }
    }

    /// Rank key of one row (higher is closer). `row_norm` is used by cosine only.
    #[inline]
    pub fn rank(&self, row: &[f32], row_norm: f32) -> f32 {
        match self.metric {
            Metric::Dot => (self.k.dot)(self.query, row),
            Metric::L2 => -(self.k.l2)(self.query, row),
            Metric::Cosine => {
                let denom = self.query_norm * row_norm;
                if denom > 0.0 {
                    (self.k.dot)(self.query, row) / denom
                } else {
                    0.0
                }
            }
        }
    }

    /// The user-facing score of a rank key: cosine and dot unchanged, l2 the distance.
    pub fn score(&self, rank: f32) -> f32 {
        match self.metric {
            Metric::L2 => (-rank).max(0.0).sqrt(),
            Metric::Cosine | Metric::Dot => rank,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn kernels_match_naive_for_all_lengths() {
        for n in [0usize, 1, 3, 31, 32, 33, 64, 100, 128, 768, 1000] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 2.0).collect();
            let d = naive_dot(&a, &b);
            assert!(
                (f64::from(dot(&a, &b)) - d).abs() < 1e-3 * (1.0 + d.abs()),
                "dot n={n}"
            );
            let l: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum();
            assert!(
                (f64::from(l2_squared(&a, &b)) - l).abs() < 1e-3 * (1.0 + l),
                "l2 n={n}"
            );
        }
    }

    #[test]
    fn rank_and_score_per_metric() {
        let q = [1.0, 0.0];
        let cos = Kernel::new(Metric::Cosine, &q);
        assert!((cos.score(cos.rank(&[2.0, 0.0], 2.0)) - 1.0).abs() < 1e-6);
        assert_eq!(
            cos.rank(&[0.0, 0.0], 0.0),
            0.0,
            "zero vector has similarity 0"
        );
        let l2 = Kernel::new(Metric::L2, &q);
        assert!((l2.score(l2.rank(&[4.0, 4.0], 0.0)) - 5.0).abs() < 1e-6);
        assert!(
            l2.rank(&[1.0, 0.1], 0.0) > l2.rank(&[3.0, 0.0], 0.0),
            "closer ranks higher"
        );
        let dot = Kernel::new(Metric::Dot, &q);
        assert_eq!(dot.score(dot.rank(&[3.0, 9.0], 0.0)), 3.0);
    }
}
