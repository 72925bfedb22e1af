//! SVG charts of latency by percentile, one line per step of each result file, in the
//! style of HdrHistogram's plotter: the x axis is `1/(1-percentile)` on a log scale,
//! so 90%, 99%, 99.9%... are evenly spaced and the tail is visible.
//!
//! The latency axis is logarithmic when the lines span more than [`LOG_AXIS_SPAN`]x
//! (a 7 s tail next to a 0.3 ms run would flatten the fast one to zero on a linear
//! axis); `--linear` forces a linear one. Lines of failed or loadgen-saturated steps
//! are thin and say so in the legend.
//!
//! Owns: reading series from result files and drawing them. Must not: need fonts or
//! a bitmap backend (plotters' SVG backend writes text elements).

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{read_hgrm, Report};

/// The largest 1/(1-percentile) shown: up to 99.9999%.
const MAX_X: f64 = 1e6;

/// Latency spans (max / min) beyond which the latency axis is logarithmic.
pub const LOG_AXIS_SPAN: f64 = 20.0;

/// Room right of the plot so the last percentile label is not clipped.
const RIGHT_MARGIN: u32 = 60;

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend: the run's label or file name, the step, and a mark when it failed.
    pub name: String,
    /// `[quantile, microseconds]`, quantile ascending.
    pub points: Vec<[f64; 2]>,
    /// The step failed its checks or loadgen was saturated: drawn thin.
    pub flagged: bool,
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
        Ok(report_series(&report, Some(path)))
    } else {
        let points = read_hgrm(&text);
        if points.is_empty() {
            bail!("{} has no percentile lines", path.display());
        }
        Ok(vec![Series {
            name: stem,
            points,
            flagged: false,
        }])
    }
}

/// A report's steps as series, named `<label or file name> <step> [#run]`, marked
/// `FAILED` or `loadgen saturated` when so.
pub fn report_series(report: &Report, origin: Option<&Path>) -> Vec<Series> {
    let several = report.steps.len() > 1;
    let repeated = report.steps.iter().any(|s| s.repeat > 1);
    let name = report.name(origin);
    report
        .steps
        .iter()
        .filter(|s| s.latency.count > 0)
        .map(|s| {
            let mut line = name.clone();
            if several {
                line.push(' ');
                line.push_str(&s.label);
            }
            if repeated {
                line.push_str(&format!(" #{}", s.repeat));
            }
            if !s.passed {
                line.push_str(" (FAILED)");
            }
            if s.loadgen_saturated {
                line.push_str(" (loadgen saturated)");
            }
            Series {
                name: line,
                points: s.latency.spectrum.clone(),
                flagged: !s.passed || s.loadgen_saturated,
            }
        })
        .collect()
}

/// Draws the series into an SVG file; the latency axis is logarithmic when they span
/// more than [`LOG_AXIS_SPAN`]x, unless `linear`.
pub fn plot(path: &Path, series: &[Series], title: &str, linear: bool) -> Result<()> {
    let ys = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(to_xy))
            .map(|(_, y)| y)
            .filter(|y| *y > 0.0)
    };
    let max_y = ys().fold(0.0f64, f64::max);
    let min_y = ys().fold(f64::INFINITY, f64::min);
    if max_y <= 0.0 {
        bail!("nothing to plot: no latencies recorded");
    }
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    if !linear && max_y / min_y > LOG_AXIS_SPAN {
        draw(
            &root,
            series,
            title,
            "latency (ms, log scale)",
            (min_y * 0.8..max_y * 1.25).log_scale(),
        )?;
    } else {
        draw(&root, series, title, "latency (ms)", 0.0f64..max_y * 1.05)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

/// A spectrum point as chart coordinates: `(1/(1-quantile), milliseconds)`.
fn to_xy(p: &[f64; 2]) -> (f64, f64) {
    ((1.0 / (1.0 - p[0])).clamp(1.0, MAX_X), p[1] / 1000.0)
}

/// Draws the chart with latency axis `y` (linear or logarithmic).
fn draw<Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    series: &[Series],
    title: &str,
    y_desc: &str,
    y: Y,
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .margin_right(RIGHT_MARGIN)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0f64..MAX_X).log_scale(), y)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(y_desc)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| latency_label(*y))
        .draw()
        .map_err(plot_error)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let width = if s.flagged { 1 } else { 2 };
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(to_xy),
                color.stroke_width(width),
            ))
            .map_err(plot_error)?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// Milliseconds with as many digits as they need: `0.05`, `1.5`, `250`.
fn latency_label(ms: f64) -> String {
    let text = if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
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
                flagged: false,
            },
            Series {
                name: "b (FAILED)".into(),
                points: vec![[0.0, 40.0], [0.5, 60.0], [0.999, 7_000_000.0]],
                flagged: true,
            },
        ];
        plot(&path, &series, "test", false).expect("plots");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("99.9%"));
        assert!(
            svg.contains("\na\n") && svg.contains("\nb (FAILED)\n"),
            "legend names"
        );
        assert!(
            svg.contains("log scale"),
            "7 s next to 40 us needs a log axis"
        );
        plot(&path, &series, "test", true).expect("plots");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(!svg.contains("log scale"), "--linear");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
