//! The load tool's report: a Markdown page (the figures of every phase, then every target
//! with its threshold, measured value and verdict), a JSON document with the same, and
//! the charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::charts::{self, Series};
use crate::stats::percentile_curve;

/// How a target came out in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// Its phase ran but could not measure it (the reason is in `measured`).
    NotMeasured,
    /// Its phase was not among `--phases`.
    NotRun,
}

impl Verdict {
    pub fn of(met: bool) -> Verdict {
        if met {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::NotMeasured => "not measured",
            Verdict::NotRun => "not run",
        }
    }
}

/// One line of the targets table.
pub struct TargetRow {
    /// A stable key (`cache_get_p50`), for ordering and for readers of the JSON.
    pub id: &'static str,
    pub target: String,
    /// What counts as met (`<= 1.2x`).
    pub threshold: String,
    pub measured: String,
    pub verdict: Verdict,
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

    /// A target's outcome: a line of the page now, a row of the Targets section at the end.
    pub fn target(&mut self, row: TargetRow) {
        self.line(format!(
            "target: {} ({}): {} -> {}",
            row.target,
            row.threshold,
            row.measured,
            row.verdict.as_str()
        ));
        self.targets.push(row);
    }

    /// The Targets section: every target in one table.
    pub fn targets_section(&self) -> String {
        let count = |v: Verdict| self.targets.iter().filter(|t| t.verdict == v).count();
        let mut md = format!(
            "## Targets\n\n{} met, {} MISSED, {} not measured, {} not run.\n\n\
             | target | threshold | measured | verdict |\n|---|---|---|---|\n",
            count(Verdict::Met),
            count(Verdict::Missed),
            count(Verdict::NotMeasured),
            count(Verdict::NotRun)
        );
        for t in &self.targets {
            let verdict = match t.verdict {
                Verdict::Missed => "**MISSED**",
                v => v.as_str(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {verdict} |",
                t.target, t.threshold, t.measured
            );
        }
        md
    }

    /// Writes `results.md`, `results.json` and the charts to `out`; returns the page.
    pub fn write(&mut self, out: &Path, concurrency: &[usize]) -> std::io::Result<String> {
        let mut md = String::from("## Figures\n");
        md.push_str(&self.md);
        md.push('\n');
        md.push_str(&self.targets_section());
        std::fs::write(out.join("results.md"), &md)?;
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({"id": t.id, "target": t.target, "threshold": t.threshold,
                "measured": t.measured, "verdict": t.verdict.as_str(),
                "met": match t.verdict {
                    Verdict::Met => Some(true),
                    Verdict::Missed => Some(false),
                    _ => None,
                }})
            })
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
