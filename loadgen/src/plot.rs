//! SVG charts of latency by percentile, one line per step of each result file, in the
//! style of HdrHistogram's plotter: the x axis is `1/(1-percentile)` on a log scale,
//! so 90%, 99%, 99.9%... are evenly spaced and the tail is visible.
//!
//! Owns: reading series from result files and drawing them. Must not: need fonts or
//! a bitmap backend (plotters' SVG backend writes text elements).

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;

use crate::report::{read_hgrm, Report};

/// The largest 1/(1-percentile) shown: up to 99.9999%.
const MAX_X: f64 = 1e6;

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// `[quantile, microseconds]`, quantile ascending.
    pub points: Vec<[f64; 2]>,
}

/// Reads the series of a loadgen JSON result (one per step with latencies) or of a
/// `.hgrm` percentile distribution.
pub fn load_series(path: &Path) -> Result<Vec<Series>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if path.extension().is_some_and(|e| e == "json") {
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a loadgen result", path.display()))?;
        Ok(report_series(&report))
    } else {
        let points = read_hgrm(&text);
        if points.is_empty() {
            bail!("{} has no percentile lines", path.display());
        }
        Ok(vec![Series { name: stem, points }])
    }
}

/// A report's steps as series, named `<label> <step>`.
pub fn report_series(report: &Report) -> Vec<Series> {
    let several = report.steps.len() > 1;
    report
        .steps
        .iter()
        .filter(|s| s.latency.count > 0)
        .map(|s| Series {
            name: if several {
                format!("{} {}", report.name(), s.label)
            } else {
                report.name()
            },
            points: s.latency.spectrum.clone(),
        })
        .collect()
}

/// Draws the series into an SVG file.
pub fn plot(path: &Path, series: &[Series], title: &str) -> Result<()> {
    if series.iter().all(|s| s.points.is_empty()) {
        bail!("nothing to plot: no latencies recorded");
    }
    let to_xy = |p: &[f64; 2]| ((1.0 / (1.0 - p[0])).clamp(1.0, MAX_X), p[1] / 1000.0);
    let max_y = series
        .iter()
        .flat_map(|s| s.points.iter().map(to_xy))
        .map(|(_, y)| y)
        .fold(0.0f64, f64::max)
        * 1.05;
    let max_y = if max_y > 0.0 { max_y } else { 1.0 };
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0f64..MAX_X).log_scale(), 0.0f64..max_y)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(plot_error)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(to_xy),
                color.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// `x = 1/(1-p)` as a percentile: 1 -> 0%, 10 -> 90%, 100 -> 99%, 1000 -> 99.9%.
fn percentile_label(x: f64) -> String {
    let pct = (1.0 - 1.0 / x) * 100.0;
    let text = format!("{pct:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot failed: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_percentiles() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
    }

    #[test]
    fn draws_an_svg() {
        let dir = std::env::temp_dir().join(format!("loadgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("p.svg");
        let series = vec![
            Series {
                name: "a".into(),
                points: vec![[0.0, 50.0], [0.9, 80.0], [0.99, 200.0], [1.0, 900.0]],
            },
            Series {
                name: "b".into(),
                points: vec![[0.0, 40.0], [0.5, 60.0], [0.999, 300.0]],
            },
        ];
        plot(&path, &series, "test").expect("plots");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("99.9%"));
        assert!(
            svg.contains("\na\n") && svg.contains("\nb\n"),
            "legend names"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
