//! `statefn-bench plot`: renders SVG charts from saved JSON lines.
//!
//! The scenarios print one JSON object per result; saving their stdout
//! (`| tee results.txt`) keeps everything the plots need, so plotting
//! never reruns a benchmark. Only plotters' SVG backend is used: it writes
//! text as `<text>` elements, so no system font is read.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

use crate::measure::BoxError;

/// Options of `plot`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// Files with the scenarios' output (non-JSON lines are skipped).
    #[arg(long, required = true)]
    pub input: Vec<PathBuf>,
    /// Where the SVG files go.
    #[arg(long, default_value = "benches/plots")]
    pub out: PathBuf,
}

/// A line of points on a chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Reads the inputs and writes `throughput_vs_concurrency.svg`,
/// `latency_cdf.svg` and, when the inputs hold `embedded` runs,
/// `latency_vs_callers.svg`.
///
/// # Errors
///
/// An unreadable input, no data for a chart, or a drawing error.
pub fn run(args: &PlotArgs) -> Result<(), BoxError> {
    let mut results = Vec::new();
    let mut labelled = Vec::new();
    for path in &args.input {
        let label = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for line in std::fs::read_to_string(path)?.lines() {
            if line.starts_with('{') {
                let value = serde_json::from_str::<Value>(line)?;
                labelled.push((label.clone(), value.clone()));
                results.push(value);
            }
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let latency = latency_series(&labelled, args.input.len() > 1);
    if !latency.is_empty() {
        let path = args.out.join("latency_vs_callers.svg");
        draw(
            &path,
            "Embedded call latency vs callers (1k keys) and the fsync floor",
            ("concurrent callers", "latency, ms"),
            &latency,
            true,
        )?;
        println!("wrote {}", path.display());
    }
    let throughput = throughput_series(&results);
    let path = args.out.join("throughput_vs_concurrency.svg");
    draw(
        &path,
        "Throughput vs concurrency (closed loop)",
        ("concurrent callers", "requests/s"),
        &throughput,
        true,
    )?;
    println!("wrote {}", path.display());
    let cdf = cdf_series(&results);
    let path = args.out.join("latency_cdf.svg");
    draw(
        &path,
        "Latency distribution (CDF)",
        ("latency, ms", "fraction of calls"),
        &cdf,
        false,
    )?;
    println!("wrote {}", path.display());
    Ok(())
}

fn matches(result: &Value, scenario: &str, variant: &str) -> bool {
    result["scenario"] == scenario && result["variant"] == variant
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// embedded at 1,000 keys (durable, in-memory) and every http variant,
/// throughput by callers.
fn throughput_series(results: &[Value]) -> Vec<Series> {
    let wanted: [(&str, &str, &str); 5] = [
        ("embedded", "durable", "embedded durable, 1k keys"),
        ("embedded", "in-memory", "embedded in-memory, 1k keys"),
        ("http", "floor: axum noop", "HTTP floor (axum no-op)"),
        ("http", "bank", "HTTP bank (statefn-bench client)"),
        (
            "http",
            "bank (shared loadgen)",
            "HTTP bank (shared loadgen)",
        ),
    ];
    wanted
        .iter()
        .map(|&(scenario, variant, name)| {
            let mut points: Vec<(f64, f64)> = results
                .iter()
                .filter(|r| matches(r, scenario, variant))
                .filter(|r| scenario != "embedded" || r["params"]["keys"] == 1000)
                .filter_map(|r| {
                    Some((
                        number(&r["params"]["callers"])?,
                        number(&r["throughput_per_s"])?,
                    ))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: name.into(),
                points,
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// Embedded at 1,000 keys by callers: durable p50 and p99, in-memory p50,
/// and the p50 of raw append+fdatasync measured right before each durable
/// run (the floor). Repeated runs of a cell are drawn as their median. With
/// several inputs, each series is named after its file.
fn latency_series(results: &[(String, Value)], by_input: bool) -> Vec<Series> {
    // (variant, field, name)
    let wanted: [(&str, &str, &str); 4] = [
        ("durable", "p50_ms", "durable p50"),
        ("durable", "p99_ms", "durable p99"),
        ("in-memory", "p50_ms", "in-memory p50"),
        (
            "floor: append+fdatasync 256B",
            "p50_ms",
            "fdatasync p50 (floor)",
        ),
    ];
    let mut inputs: Vec<&str> = results.iter().map(|(l, _)| l.as_str()).collect();
    inputs.dedup();
    let mut series = Vec::new();
    for input in inputs {
        for &(variant, field, name) in &wanted {
            let mut by_callers: Vec<(f64, Vec<f64>)> = Vec::new();
            for (_, r) in results.iter().filter(|(l, r)| {
                l == input && matches(r, "embedded", variant) && r["params"]["keys"] == 1000
            }) {
                let (Some(callers), Some(value)) =
                    (number(&r["params"]["callers"]), number(&r[field]))
                else {
                    continue;
                };
                match by_callers.iter_mut().find(|(c, _)| *c == callers) {
                    Some((_, values)) => values.push(value),
                    None => by_callers.push((callers, vec![value])),
                }
            }
            let mut points: Vec<(f64, f64)> = by_callers
                .into_iter()
                .map(|(c, mut values)| {
                    values.sort_by(f64::total_cmp);
                    (c, values.get(values.len() / 2).copied().unwrap_or(0.0))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let name = if by_input {
                format!("{input}: {name}")
            } else {
                name.to_owned()
            };
            series.push(Series { name, points });
        }
    }
    series.retain(|s| !s.points.is_empty());
    series
}

/// CDFs of the HTTP bank at each concurrency and of embedded durable calls
/// at 1,000 keys / 64 callers.
fn cdf_series(results: &[Value]) -> Vec<Series> {
    results
        .iter()
        .filter(|r| {
            matches(r, "http", "bank")
                || (matches(r, "http", "floor: axum noop") && r["params"]["callers"] == 32)
                || (matches(r, "embedded", "durable")
                    && r["params"]["keys"] == 1000
                    && r["params"]["callers"] == 64)
        })
        .filter_map(|r| {
            let cdf = r["cdf_ms"].as_array()?;
            let points = cdf
                .iter()
                .filter_map(|pair| Some((number(&pair[1])?.max(0.001), number(&pair[0])?)))
                .collect();
            let name = format!(
                "{} {} C={}",
                r["scenario"].as_str().unwrap_or(""),
                r["variant"].as_str().unwrap_or(""),
                r["params"]["callers"]
            );
            Some(Series { name, points })
        })
        .collect()
}

/// One chart: log x; log y when `log_y` (throughput), linear 0..1 otherwise.
fn draw(
    path: &Path,
    title: &str,
    labels: (&str, &str),
    series: &[Series],
    log_y: bool,
) -> Result<(), BoxError> {
    if series.is_empty() {
        return Err(format!("no data for {}", path.display()).into());
    }
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        (x_min, x_max, y_min, y_max) = (x_min.min(x), x_max.max(x), y_min.min(y), y_max.max(y));
    }
    let x_range = (x_min / 1.5)..(x_max * 1.5);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(75);
    if log_y {
        let mut chart = builder.build_cartesian_2d(
            x_range.log_scale(),
            ((y_min / 2.0)..(y_max * 2.0)).log_scale(),
        )?;
        chart
            .configure_mesh()
            .x_desc(labels.0)
            .y_desc(labels.1)
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(
                    LineSeries::new(s.points.clone(), color.stroke_width(2)).point_size(4),
                )?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    } else {
        let mut chart = builder.build_cartesian_2d(x_range.log_scale(), 0f64..1.0)?;
        chart
            .configure_mesh()
            .x_desc(labels.0)
            .y_desc(labels.1)
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
