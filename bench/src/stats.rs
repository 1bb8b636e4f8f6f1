//! Latency histograms per operation (HdrHistogram, nanoseconds, 3 significant digits).
//!
//! Every client task keeps its own [`Recorder`] (no shared lock on the measured path);
//! they are merged once the run is over.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Longest latency a histogram holds; slower calls are clamped to it.
const LATENCY_NS_MAX: u64 = 120_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("static bounds are valid")
}

/// Latencies and failures per operation name.
#[derive(Default)]
pub struct Recorder {
    pub ops: BTreeMap<&'static str, Histogram<u64>>,
    pub errors: BTreeMap<&'static str, u64>,
    /// The first error seen, to print: a failing run must say why.
    pub first_error: Option<String>,
}

impl Recorder {
    pub fn record(&mut self, op: &'static str, elapsed: Duration) {
        let ns = (elapsed.as_nanos() as u64).clamp(1, LATENCY_NS_MAX);
        self.ops
            .entry(op)
            .or_insert_with(new_histogram)
            .record(ns)
            .expect("value is clamped into the histogram's range");
    }

    pub fn error(&mut self, op: &'static str, e: impl std::fmt::Display) {
        *self.errors.entry(op).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{op}: {e}"));
        }
    }

    /// Times `fut`; records its latency on success and counts it on failure.
    pub async fn time<T, E: std::fmt::Display>(
        &mut self,
        op: &'static str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        let started = Instant::now();
        match fut.await {
            Ok(v) => {
                self.record(op, started.elapsed());
                Some(v)
            }
            Err(e) => {
                self.error(op, e);
                None
            }
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        for (op, h) in other.ops {
            self.ops
                .entry(op)
                .or_insert_with(new_histogram)
                .add(&h)
                .expect("histograms share their bounds");
        }
        for (op, n) in other.errors {
            *self.errors.entry(op).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Successful operations of every kind.
    pub fn total_ops(&self) -> u64 {
        self.ops.values().map(Histogram::len).sum()
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// All operations in one histogram.
    pub fn combined(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for h in self.ops.values() {
            all.add(h).expect("histograms share their bounds");
        }
        all
    }
}

/// The figures a report shows for one histogram.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        let us = |ns: u64| ns as f64 / 1000.0;
        Summary {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// `(percentile, microseconds)` points of a latency distribution, for plotting on a
/// "nines" axis (`log10(1 / (1 - q))`): evenly spaced from p0 up to p99.99, stopping
/// where the histogram has too few samples to say more (a curve past p99.9 of 1,000
/// samples would only repeat the maximum).
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    const STEPS_PER_NINE: u32 = 20;
    let nines_max = (h.len().max(1) as f64).log10().min(4.0);
    let mut points = Vec::new();
    for i in 0..=(4 * STEPS_PER_NINE) {
        let x = f64::from(i) / f64::from(STEPS_PER_NINE);
        if x > nines_max {
            break;
        }
        let q = 1.0 - 10f64.powf(-x);
        points.push((q * 100.0, h.value_at_quantile(q) as f64 / 1000.0));
    }
    points
}

/// The least-squares line through `points`: `(slope, intercept)`; `None` for fewer than
/// two distinct x.
pub fn fit_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if points.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, mean_y - slope * mean_x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_stop_where_the_samples_do() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let curve = percentile_curve(&h);
        // 1,000 samples say something up to p99.9 (3 nines), not beyond.
        let last = curve.last().unwrap().0;
        assert!((last - 99.9).abs() < 1e-6, "{last}");
        assert!((Summary::of(&h).p50_us - 500.0).abs() < 1.0);
    }

    #[test]
    fn lines_fit() {
        let (slope, intercept) = fit_line(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
        assert!((slope - 2.0).abs() < 1e-9 && (intercept - 1.0).abs() < 1e-9);
        assert_eq!(fit_line(&[(1.0, 1.0)]), None);
        assert_eq!(fit_line(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn recorders_merge() {
        let mut a = Recorder::default();
        a.record("save", Duration::from_micros(100));
        let mut b = Recorder::default();
        b.record("save", Duration::from_micros(300));
        b.error("load", "boom");
        a.merge(b);
        assert_eq!(a.total_ops(), 2);
        assert_eq!(a.total_errors(), 1);
        assert_eq!(a.first_error.as_deref(), Some("load: boom"));
    }
}
