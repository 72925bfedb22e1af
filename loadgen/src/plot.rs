//! Charts of latency by percentile, one line per step of each result file, in the
//! style of HdrHistogram's plotter: the x axis is `1/(1-percentile)` on a log scale,
//! so 90%, 99%, 99.9%... are evenly spaced and the tail is visible. Each chart is
//! written twice from the same drawing code: an SVG, and a PNG beside it (same name,
//! `.png`) for a README or a CI page that shows images.
//!
//! The latency axis is logarithmic when the lines span more than [`LOG_AXIS_SPAN`]x
//! (a 7 s tail next to a 0.3 ms run would flatten the fast one to zero on a linear
//! axis), and then runs from decade to decade with the decades (0.1, 1, 10, 100 ms)
//! and their 2x and 5x labelled; `--linear` forces a linear one. The percentile axis
//! is labelled at 0, 50, 90, 99, 99.9, 99.99, 99.999%. Legends name the run (its
//! `--label`, else its file) and the step's rate. Lines of failed or
//! loadgen-saturated steps are thin and say so in the legend.
//!
//! Owns: reading series from result files and drawing them. Must not: need a system
//! font or font library (the PNG's text uses the DejaVu Sans font built in).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{read_hgrm, Report};

/// Chart size in pixels (the SVG's user units and the PNG's pixels).
const SIZE: (u32, u32) = (1000, 600);

/// The percentile ticks, as `1/(1-percentile)`: 0, 50, 90, 99, 99.9, 99.99, 99.999%.
const PERCENTILE_TICKS: [f64; 7] = [1.0, 2.0, 10.0, 100.0, 1e3, 1e4, 1e5];

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

/// A report's steps as series, named `<label or file name>, <rate> msg/s [#run]`,
/// marked `FAILED` or `loadgen saturated` when so.
pub fn report_series(report: &Report, origin: Option<&Path>) -> Vec<Series> {
    let repeated = report.steps.iter().any(|s| s.repeat > 1);
    let name = report.name(origin);
    report
        .steps
        .iter()
        .filter(|s| s.latency.count > 0)
        .map(|s| {
            let mut line = if s.target_rate > 0.0 {
                format!("{name}, {} msg/s", s.target_rate)
            } else {
                format!("{name}, {}", s.label)
            };
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

/// The two files a chart is written to: the SVG and the PNG beside it, named after
/// `path` (`out.svg` or `out.png` gives `out.svg` and `out.png`).
pub fn chart_paths(path: &Path) -> (PathBuf, PathBuf) {
    if path.extension().is_some_and(|e| e == "png") {
        (path.with_extension("svg"), path.to_path_buf())
    } else {
        (path.to_path_buf(), path.with_extension("png"))
    }
}

/// The latency axis: linear from 0, or logarithmic from decade to decade.
enum LatencyAxis {
    Linear { max_ms: f64 },
    Log { low_ms: f64, high_ms: f64 },
}

impl LatencyAxis {
    /// Logarithmic when the lines span more than [`LOG_AXIS_SPAN`]x, unless `linear`.
    fn choose(series: &[Series], linear: bool) -> Result<Self> {
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
        if linear || max_y / min_y <= LOG_AXIS_SPAN {
            return Ok(Self::Linear {
                max_ms: max_y * 1.05,
            });
        }
        let low_ms = 10f64.powf(min_y.log10().floor());
        let mut high_ms = 10f64.powf(max_y.log10().ceil());
        if high_ms <= low_ms {
            high_ms = low_ms * 10.0;
        }
        Ok(Self::Log { low_ms, high_ms })
    }
}

/// The labelled latencies of a log axis from `low` to `high` (decades apart): each
/// decade and its 2x and 5x (0.1, 0.2, 0.5, 1, 2, 5, 10 ms...).
fn decade_ticks(low: f64, high: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = low;
    while decade <= high * 1.000_001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v <= high * 1.000_001 {
                ticks.push(v);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// The light grid lines of a log axis: every whole multiple in each decade.
fn decade_grid(low: f64, high: f64) -> Vec<f64> {
    let mut grid = Vec::new();
    let mut decade = low;
    while decade < high * 0.999_999 {
        grid.extend((1..10).map(|m| decade * m as f64));
        decade *= 10.0;
    }
    grid
}

/// Registers the built-in font under the name the charts use, once per process.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        bail!("plot failed: the built-in font cannot be read")
    }
}

/// Draws the series into an SVG and a PNG named after `path` (see [`chart_paths`]);
/// returns both paths.
pub fn plot(
    path: &Path,
    series: &[Series],
    title: &str,
    linear: bool,
) -> Result<(PathBuf, PathBuf)> {
    register_font()?;
    let axis = LatencyAxis::choose(series, linear)?;
    let (svg_path, png_path) = chart_paths(path);
    {
        let root = SVGBackend::new(&svg_path, SIZE).into_drawing_area();
        draw_chart(&root, series, title, &axis)?;
        root.present().map_err(plot_error)?;
    }
    let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        draw_chart(&root, series, title, &axis)?;
        root.present().map_err(plot_error)?;
    }
    write_png(&png_path, &pixels)?;
    Ok((svg_path, png_path))
}

/// Encodes RGB pixels of [`SIZE`] as a PNG file.
fn write_png(path: &Path, rgb: &[u8]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .write_image_data(rgb)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Draws the whole chart on one backend, with the chosen latency axis.
fn draw_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[Series],
    title: &str,
    axis: &LatencyAxis,
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    match *axis {
        LatencyAxis::Linear { max_ms } => draw(root, series, title, "latency (ms)", 0.0f64..max_ms),
        LatencyAxis::Log { low_ms, high_ms } => draw(
            root,
            series,
            title,
            "latency (ms, log scale)",
            (low_ms..high_ms)
                .log_scale()
                .with_key_points(decade_ticks(low_ms, high_ms))
                .with_light_points(decade_grid(low_ms, high_ms)),
        ),
    }
}

/// A spectrum point as chart coordinates: `(1/(1-quantile), milliseconds)`.
fn to_xy(p: &[f64; 2]) -> (f64, f64) {
    ((1.0 / (1.0 - p[0])).clamp(1.0, MAX_X), p[1] / 1000.0)
}

/// Draws the chart with latency axis `y` (linear or logarithmic).
fn draw<DB: DrawingBackend, Y>(
    root: &DrawingArea<DB, Shift>,
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
        .build_cartesian_2d(
            (1.0f64..MAX_X)
                .log_scale()
                .with_key_points(PERCENTILE_TICKS.to_vec()),
            y,
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
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
        .label_font(("sans-serif", 15))
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
    fn log_axis_runs_decade_to_decade_with_labelled_decades() {
        let ticks = decade_ticks(0.1, 10.0);
        assert_eq!(ticks, vec![0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]);
        let labels: Vec<String> = ticks.iter().map(|t| latency_label(*t)).collect();
        assert_eq!(labels, ["0.1", "0.2", "0.5", "1", "2", "5", "10"]);
        let pct: Vec<String> = PERCENTILE_TICKS
            .iter()
            .map(|x| percentile_label(*x))
            .collect();
        assert_eq!(
            pct,
            ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        );
        // A run of 0.16-1 ms next to a 7 s tail: the axis starts at the 0.1 decade.
        let series = [Series {
            name: "a".into(),
            points: vec![[0.0, 160.0], [0.99, 1000.0], [1.0, 7_000_000.0]],
            flagged: false,
        }];
        match LatencyAxis::choose(&series, false).expect("an axis") {
            LatencyAxis::Log { low_ms, high_ms } => {
                assert!((low_ms - 0.1).abs() < 1e-12, "{low_ms}");
                assert!((high_ms - 10_000.0).abs() < 1e-6, "{high_ms}");
            }
            LatencyAxis::Linear { .. } => panic!("a 7 s tail next to 0.16 ms needs a log axis"),
        }
    }

    #[test]
    fn chart_files_are_named_after_the_output() {
        assert_eq!(
            chart_paths(Path::new("/tmp/a.svg")),
            (PathBuf::from("/tmp/a.svg"), PathBuf::from("/tmp/a.png"))
        );
        assert_eq!(
            chart_paths(Path::new("/tmp/a.png")),
            (PathBuf::from("/tmp/a.svg"), PathBuf::from("/tmp/a.png"))
        );
    }

    #[test]
    fn draws_an_svg_and_a_png() {
        let dir = std::env::temp_dir().join(format!("loadgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("p.svg");
        let series = vec![
            Series {
                name: "a, 100 msg/s".into(),
                points: vec![[0.0, 160.0], [0.9, 300.0], [0.99, 600.0], [1.0, 1000.0]],
                flagged: false,
            },
            Series {
                name: "b, 2000 msg/s (FAILED)".into(),
                points: vec![[0.0, 40.0], [0.5, 60.0], [0.999, 7_000_000.0]],
                flagged: true,
            },
        ];
        let (svg_path, png_path) = plot(&path, &series, "test", false).expect("plots");
        assert_eq!(svg_path, path);
        let svg = std::fs::read_to_string(&svg_path).expect("written");
        assert!(svg.starts_with("<svg"));
        for label in ["99.9%", "99.99%", "50%", "0.1", "1", "10", "100"] {
            let label = format!("\n{label}\n");
            assert!(svg.contains(&label), "{label} labelled");
        }
        assert!(
            svg.contains("\na, 100 msg/s\n") && svg.contains("\nb, 2000 msg/s (FAILED)\n"),
            "legend names run and rate"
        );
        assert!(
            svg.contains("log scale"),
            "7 s next to 40 us needs a log axis"
        );
        let png = std::fs::read(&png_path).expect("the PNG beside the SVG");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
        plot(&path, &series, "test", true).expect("plots");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(!svg.contains("log scale"), "--linear");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
