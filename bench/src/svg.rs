//! Hand-written SVG line charts (no plotting dependency): a latency distribution
//! (percentile on a "nines" axis, latency on a log axis) and throughput against
//! concurrency.

use std::fmt::Write;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;

/// Colours that stay apart for the colour-blind (Okabe-Ito).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    /// `(x, y)` in data units (x already transformed if its axis is special).
    pub points: Vec<(f64, f64)>,
}

pub struct Axis {
    pub label: String,
    /// Logarithmic (base 10); values must be > 0.
    pub log: bool,
    /// Fixed ticks `(value, label)`; empty: decades (log) or five even steps (linear),
    /// labelled by `format`.
    pub ticks: Vec<(f64, String)>,
    pub format: fn(f64) -> String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Scale {
    fn new(axis: &Axis, values: impl Iterator<Item = f64>, from: f64, to: f64) -> Scale {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.chain(axis.ticks.iter().map(|t| t.0)) {
            if v.is_finite() && (!axis.log || v > 0.0) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if !lo.is_finite() {
            (lo, hi) = (1.0, 10.0);
        }
        if axis.log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
        } else {
            // Quantities on a linear axis (seconds, MiB) read best from zero, on round steps.
            lo = lo.min(0.0);
            if hi <= lo {
                hi = lo + 1.0;
            }
            let step = nice_step((hi - lo) / 5.0);
            lo = (lo / step).floor() * step;
            // A value a hair past a round step (a 30.2 s run) does not earn a whole step.
            hi = ((hi / step) - 0.05).ceil() * step;
        }
        Scale {
            lo,
            hi,
            log: axis.log,
            from,
            to,
        }
    }

    fn map(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.from + t * (self.to - self.from)
    }

    fn ticks(&self, axis: &Axis) -> Vec<(f64, String)> {
        if !axis.ticks.is_empty() {
            return axis.ticks.clone();
        }
        if self.log {
            let mut out = Vec::new();
            let mut v = self.lo;
            while v <= self.hi * 1.0001 {
                out.push((v, (axis.format)(v)));
                v *= 10.0;
            }
            out
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let steps = ((self.hi - self.lo) / step).round() as usize;
            (0..=steps)
                .map(|i| {
                    let v = self.lo + step * i as f64;
                    (v, (axis.format)(v))
                })
                .collect()
        }
    }
}

/// The 1, 2 or 5 times a power of ten nearest above `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A line chart with a legend on the right.
pub fn line_chart(title: &str, x: &Axis, y: &Axis, series: &[Series]) -> String {
    let xs = Scale::new(
        x,
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        LEFT,
        WIDTH - RIGHT,
    );
    let ys = Scale::new(
        y,
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        HEIGHT - BOTTOM,
        TOP,
    );
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        escape(title)
    );
    for (v, label) in xs.ticks(x) {
        let px = xs.map(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0,
            escape(&label)
        );
    }
    for (v, label) in ys.ticks(y) {
        let py = ys.map(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            escape(&label)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
        WIDTH - RIGHT - LEFT,
        HEIGHT - BOTTOM - TOP
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 22.0,
        escape(&x.label)
    );
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">{}</text>"#,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        escape(&y.label)
    );
    for (i, s) in series.iter().enumerate() {
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|p| format!("{:.1},{:.1}", xs.map(p.0), ys.map(p.1)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        if s.points.len() <= 12 {
            for p in &pts {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{}"/>"#,
                    s.color
                );
            }
        }
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = WIDTH - RIGHT + 15.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            s.color,
            lx + 30.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The "nines" axis of a latency distribution: percentile `p` (0..100) placed at
/// `log10(1 / (1 - p/100))`, so 90, 99, 99.9 and 99.99 are evenly spaced.
pub fn nines(p: f64) -> f64 {
    (1.0 / (1.0 - (p / 100.0).min(0.99999))).log10()
}

/// Ticks for [`nines`].
pub fn nines_ticks() -> Vec<(f64, String)> {
    [0.0, 90.0, 99.0, 99.9, 99.99]
        .iter()
        .map(|&p| (nines(p), format!("p{p}")))
        .collect()
}

/// `12 µs`, `3.4 ms`, `1.2 s`.
pub fn format_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.3} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{} ms", trim(us / 1000.0))
    } else {
        format!("{} µs", trim(us))
    }
}

/// `950`, `12k`, `3.4M`.
pub fn format_count(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{}M", trim(v / 1_000_000.0))
    } else if v >= 1000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.8), 1.0);
        assert_eq!(nice_step(47.0), 50.0);
        assert_eq!(nice_step(120.0), 200.0);
    }

    #[test]
    fn a_chart_has_its_series_and_legend() {
        let series = [Series {
            name: "a <b>".into(),
            color: PALETTE[0],
            dashed: true,
            points: vec![(1.0, 10.0), (8.0, 100.0), (64.0, 1000.0)],
        }];
        let axis = |log| Axis {
            label: "x".into(),
            log,
            ticks: Vec::new(),
            format: format_count,
        };
        let svg = line_chart("t", &axis(true), &axis(false), &series);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("a &lt;b&gt;"), "legend text is escaped");
    }

    #[test]
    fn nines_space_percentiles_evenly() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
    }
}
