//! The load tool's charts, drawn by plotters into SVG: a latency distribution (percentile
//! on a "nines" axis, latency on a log axis), throughput against concurrency (log-log) and
//! RSS over time.
//!
//! Hazard: plotters is built without its `ttf` feature, so no font files or system font
//! libraries are needed. Text goes into the SVG as `<text>` for the viewer to render, and
//! the axes are laid out with plotters' estimate of text width, not real glyph metrics.

use std::ops::Range;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 520;
/// Width of the plot; the legend takes the rest, right of it.
const PLOT_WIDTH: u32 = 660;
const FONT: &str = "sans-serif";
/// Font sizes as asked of plotters, whose SVG text comes out at 1/1.24 of them: about 12
/// and 16 px.
const TEXT_SIZE: u32 = 15;
const TITLE_SIZE: u32 = 20;

/// Colours that stay apart for the colour-blind (Okabe-Ito).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0xF0, 0xE4, 0x42),
];

/// One line of a chart.
pub struct Series {
    pub name: String,
    /// An index into [`PALETTE`] (taken modulo its length).
    pub color: usize,
    /// Dashed: the comparison (direct MongoDB, Redis), beside the sidecar's solid lines.
    pub dashed: bool,
    /// `(x, y)` in data units.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    fn color(&self) -> RGBColor {
        PALETTE[self.color % PALETTE.len()]
    }
}

/// Latency against percentile: `points` are `(percentile 0..100, microseconds)`.
pub fn latency(title: &str, series: &[Series]) -> std::io::Result<String> {
    // Percentiles go on the nines axis; the curves end where the samples do (p99.99 at most).
    let series: Vec<Series> = series
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            color: s.color,
            dashed: s.dashed,
            points: s.points.iter().map(|&(p, v)| (nines(p), v)).collect(),
        })
        .collect();
    // A log axis of 1 / (1 - q) has its decades at p0, p90, p99, p99.9 and p99.99.
    let x = (nines(0.0)..NINES_MAX).log_scale();
    let y = decades(ys(&series)).log_scale();
    line_chart(
        title,
        (x, "percentile", &|v: &f64| format!("p{}", percentile(*v))),
        (y, "latency", &|v: &f64| format_us(*v)),
        &series,
    )
}

/// Operations per second against concurrent clients, both on log axes, with a tick at
/// each concurrency measured.
pub fn throughput(
    title: &str,
    concurrency: &[usize],
    series: &[Series],
) -> std::io::Result<String> {
    let ticks: Vec<f64> = concurrency.iter().map(|&c| c as f64).collect();
    let x = decades(ticks.iter().copied().chain(xs(series)))
        .log_scale()
        .with_key_points(ticks);
    let y = decades(ys(series)).log_scale();
    line_chart(
        title,
        (x, "concurrent clients", &|v: &f64| format_count(*v)),
        (y, "operations per second", &|v: &f64| format_count(*v)),
        series,
    )
}

/// A quantity over time, on linear axes from zero: `points` are `(seconds, value)`.
pub fn over_time(title: &str, y_desc: &str, series: &[Series]) -> std::io::Result<String> {
    let x = 0.0..max_or_one(xs(series));
    let y = 0.0..max_or_one(ys(series)) * 1.05;
    let label = |v: &f64| trim(*v);
    line_chart(title, (x, "seconds", &label), (y, y_desc, &label), series)
}

/// An axis: its range, its description and how its labels read.
type Axis<'a, R> = (R, &'a str, &'a dyn Fn(&f64) -> String);

fn line_chart<X, Y>(
    title: &str,
    (x, x_desc, x_fmt): Axis<'_, X>,
    (y, y_desc, y_fmt): Axis<'_, Y>,
    series: &[Series],
) -> std::io::Result<String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(io)?;
        let (plot, legend) = root.split_horizontally(PLOT_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, (FONT, TITLE_SIZE))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(76)
            .build_cartesian_2d(x, y)
            .map_err(io)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(x_fmt)
            .y_label_formatter(y_fmt)
            .label_style((FONT, TEXT_SIZE))
            .axis_desc_style((FONT, TEXT_SIZE))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .max_light_lines(0)
            .draw()
            .map_err(io)?;
        for s in series {
            let style = s.color().stroke_width(2);
            let points = s
                .points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite());
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
                    .map_err(io)?;
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), style))
                    .map_err(io)?;
            }
            // Measured points are marked where there are few of them (throughput per
            // concurrency), not along a dense curve.
            if s.points.len() <= 12 {
                chart
                    .draw_series(points.map(|p| Circle::new(p, 3, s.color().filled())))
                    .map_err(io)?;
            }
        }
        for (i, s) in series.iter().enumerate() {
            let y = 60 + 20 * i as i32;
            let style = s.color().stroke_width(2);
            let line = [(12, y), (36, y)];
            if s.dashed {
                legend
                    .draw(&DashedPathElement::new(line, 6, 4, style))
                    .map_err(io)?;
            } else {
                legend.draw(&PathElement::new(line, style)).map_err(io)?;
            }
            legend
                .draw(&Text::new(
                    s.name.clone(),
                    (42, y - 6),
                    (FONT, TEXT_SIZE).into_font().color(&BLACK),
                ))
                .map_err(io)?;
        }
        root.present().map_err(io)?;
    }
    Ok(svg)
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("draw chart: {e}"))
}

fn xs(series: &[Series]) -> impl Iterator<Item = f64> + '_ {
    series.iter().flat_map(|s| s.points.iter().map(|p| p.0))
}

fn ys(series: &[Series]) -> impl Iterator<Item = f64> + '_ {
    series.iter().flat_map(|s| s.points.iter().map(|p| p.1))
}

fn max_or_one(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max > 0.0 {
        max
    } else {
        1.0
    }
}

/// The whole decades around the positive values: a log axis that starts and ends on a
/// power of ten.
fn decades(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 1.0..10.0;
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil());
    lo..if hi > lo { hi } else { lo * 10.0 }
}

/// The right end of the nines axis: p99.99.
const NINES_MAX: f64 = 10_000.0;

/// The "nines" axis of a latency distribution: percentile `p` (0..100) placed at
/// `1 / (1 - p/100)` on a log axis, so p90, p99, p99.9 and p99.99 are evenly spaced.
pub fn nines(p: f64) -> f64 {
    1.0 / (1.0 - (p / 100.0).min(0.99999))
}

/// The percentile at `x` on the nines axis, to two decimals (`99.9`).
fn percentile(x: f64) -> f64 {
    (100.0 * (1.0 - 1.0 / x.max(1.0)) * 100.0).round() / 100.0
}

/// `12 µs`, `3.4 ms`, `1.2 s`.
pub fn format_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{} s", trim(us / 1_000_000.0))
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

    /// The text elements of an SVG (plotters writes each one's text on a line of its own).
    fn texts(svg: &str) -> Vec<&str> {
        svg.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('<'))
            .collect()
    }

    fn series(name: &str, dashed: bool, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            color: 0,
            dashed,
            points,
        }
    }

    #[test]
    fn a_chart_has_its_series_and_legend() {
        let svg = throughput(
            "t",
            &[1, 8, 64],
            &[
                series(
                    "a <b>",
                    true,
                    vec![(1.0, 10.0), (8.0, 100.0), (64.0, 1000.0)],
                ),
                series("c", false, vec![(1.0, 20.0), (8.0, 200.0), (64.0, 900.0)]),
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let texts = texts(&svg);
        assert!(texts.contains(&"a &lt;b&gt;"), "legend text is escaped");
        assert!(texts.contains(&"c"), "every series in the legend");
        for tick in ["1", "8", "64"] {
            assert!(
                texts.contains(&tick),
                "a tick at each concurrency: {texts:?}"
            );
        }
    }

    #[test]
    fn latency_and_time_charts_draw() {
        let curve: Vec<(f64, f64)> = [0.0, 50.0, 90.0, 99.0, 99.9]
            .iter()
            .map(|&p| (p, 100.0 + p * 10.0))
            .collect();
        let svg = latency("l", &[series("save", false, curve)]).unwrap();
        let labels = texts(&svg);
        for tick in ["p0", "p90", "p99", "p99.9", "p99.99", "100 µs", "1 ms"] {
            assert!(labels.contains(&tick), "{tick} in {labels:?}");
        }
        let points = vec![(0.0, 20.0), (3.0, 50.0)];
        let svg = over_time("r", "RSS (MiB)", &[series("rss", false, points)]).unwrap();
        let texts = texts(&svg);
        assert!(
            texts.contains(&"RSS (MiB)") && texts.contains(&"2.5"),
            "{texts:?}"
        );
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(format_us(850.0), "850 µs");
        assert_eq!(format_us(12_500.0), "12.5 ms");
        assert_eq!(format_us(10_000_000.0), "10 s");
        assert_eq!(format_count(64_000.0), "64k");
    }

    #[test]
    fn log_axes_span_whole_decades() {
        assert_eq!(decades([3.0, 450.0].into_iter()), 1.0..1000.0);
        assert_eq!(decades([10.0].into_iter()), 10.0..100.0);
        assert_eq!(decades(std::iter::empty()), 1.0..10.0);
    }

    #[test]
    fn nines_space_percentiles_by_decades() {
        assert!((nines(90.0) - 10.0).abs() < 1e-9);
        assert!((nines(99.9) - 1000.0).abs() < 1e-6);
        assert_eq!(percentile(nines(99.9)), 99.9);
        assert_eq!(percentile(1.0), 0.0);
    }
}
