//! The load tool's report: a Markdown page (targets first, then the figures of every
//! phase), a JSON document with the same figures, and the charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::charts::{self, Series};
use crate::stats::percentile_curve;

/// One line of the targets table.
pub struct TargetRow {
    pub target: String,
    pub measured: String,
    /// `None`: could not be measured in this run (the reason is in `measured`).
    pub met: Option<bool>,
}

#[derive(Default)]
pub struct Report {
    pub md: String,
    pub json: serde_json::Map<String, Value>,
    pub targets: Vec<TargetRow>,
    /// Throughput against concurrency, per series, for the chart.
    pub throughput: BTreeMap<&'static str, Vec<(f64, f64)>>,
    /// Latency distributions for the chart: (series name, colour index, dashed, histogram).
    pub latency: Vec<(String, usize, bool, Histogram<u64>)>,
    /// Title of the latency chart.
    pub latency_title: String,
    /// RSS over time of the sustained phase: (seconds, KiB).
    pub rss: Vec<(f64, u64)>,
}

pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

/// `85 µs`, `1.25 ms`.
pub fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Report {
    pub fn section(&mut self, title: &str) {
        let _ = write!(self.md, "\n### {title}\n\n");
        println!("\n== {title}");
    }

    /// A line of the page, echoed to stdout as the run goes.
    pub fn line(&mut self, text: impl AsRef<str>) {
        self.md.push_str(text.as_ref());
        self.md.push('\n');
        println!("{}", text.as_ref());
    }

    pub fn target(&mut self, target: impl Into<String>, measured: String, met: Option<bool>) {
        let target = target.into();
        self.line(format!("target: {target}: {measured} -> {}", verdict(met)));
        self.targets.push(TargetRow {
            target,
            measured,
            met,
        });
    }

    /// Writes `results.md`, `results.json` and the charts to `out`; returns the page.
    pub fn write(&mut self, out: &Path, concurrency: &[usize]) -> std::io::Result<String> {
        let mut md = String::from("## Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
        for t in &self.targets {
            let _ = writeln!(md, "| {} | {} | {} |", t.target, t.measured, verdict(t.met));
        }
        md.push_str("\n## Figures\n");
        md.push_str(&self.md);
        std::fs::write(out.join("results.md"), &md)?;
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| json!({"target": t.target, "measured": t.measured, "met": t.met}))
            .collect();
        self.json.insert("targets".into(), json!(targets));
        let text = serde_json::to_string_pretty(&Value::Object(self.json.clone()))
            .map_err(std::io::Error::other)?;
        std::fs::write(out.join("results.json"), text)?;
        if !self.latency.is_empty() {
            std::fs::write(out.join("latency.svg"), self.latency_chart()?)?;
        }
        if !self.throughput.is_empty() {
            std::fs::write(
                out.join("throughput.svg"),
                self.throughput_chart(concurrency)?,
            )?;
        }
        if !self.rss.is_empty() {
            std::fs::write(out.join("rss.svg"), self.rss_chart()?)?;
        }
        Ok(md)
    }

    fn latency_chart(&self) -> std::io::Result<String> {
        let series: Vec<Series> = self
            .latency
            .iter()
            .map(|(name, i, dashed, h)| Series {
                name: name.clone(),
                color: *i,
                dashed: *dashed,
                points: percentile_curve(h),
            })
            .collect();
        charts::latency(&self.latency_title, &series)
    }

    fn throughput_chart(&self, concurrency: &[usize]) -> std::io::Result<String> {
        let series: Vec<Series> = self
            .throughput
            .iter()
            .enumerate()
            .map(|(i, (name, points))| Series {
                name: name.to_string(),
                color: i,
                dashed: name.contains("MongoDB") || name.contains("Redis"),
                points: points.clone(),
            })
            .collect();
        charts::throughput("Throughput vs concurrency", concurrency, &series)
    }

    fn rss_chart(&self) -> std::io::Result<String> {
        let series = [Series {
            name: "sidecar RSS".into(),
            color: 0,
            dashed: false,
            points: self
                .rss
                .iter()
                .map(|(t, kib)| (*t, *kib as f64 / 1024.0))
                .collect(),
        }];
        charts::over_time(
            "RSS under sustained saves of new agents",
            "RSS (MiB)",
            &series,
        )
    }
}
