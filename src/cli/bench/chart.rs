//! The results as an SVG chart (`--plot`): propagation time and traffic against N, drawn
//! with `plotters`' SVG backend. That backend writes text as `<text>` elements for the
//! viewer to render, so it needs no font files and no native code.

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::args::Mode;
use super::report::{Report, Row};

/// Width and height of the chart (px).
const SIZE: (u32, u32) = (1000, 380);

/// The font every text uses; the viewer picks the face.
const FONT: FontFamily = FontFamily::SansSerif;

/// One line of a chart.
struct Series {
    /// Its name in the legend.
    name: &'static str,
    /// Its colour (each series of a panel has its own).
    color: RGBColor,
    /// Dashed: a bound (the slowest write) rather than a typical figure.
    dashed: bool,
    /// `(N, value)` for each row that has the figure.
    points: Vec<(usize, f64)>,
}

/// One panel: a title, what its y axis measures, and its lines.
struct Panel {
    title: &'static str,
    y_label: &'static str,
    series: Vec<Series>,
}

/// The two panels of the chart for `r`: propagation time, and traffic per node.
fn panels(r: &Report) -> [Panel; 2] {
    let pick = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(usize, f64)> {
        r.rows
            .iter()
            .filter_map(|x| f(x).map(|y| (x.nodes, y)))
            .collect()
    };
    let series = |name, color, dashed, points| Series {
        name,
        color,
        dashed,
        points,
    };
    let propagation = Panel {
        title: "Time for a write to reach every node",
        y_label: "ms",
        series: vec![
            series(
                "p50",
                RGBColor(0x1f, 0x77, 0xb4),
                false,
                pick(&|x| x.propagation.as_ref().map(|p| p.p50_ms)),
            ),
            series(
                "p99",
                RGBColor(0xd6, 0x27, 0x28),
                false,
                pick(&|x| x.propagation.as_ref().map(|p| p.p99_ms)),
            ),
            series(
                "max",
                RGBColor(0x7f, 0x7f, 0x7f),
                true,
                pick(&|x| x.propagation.as_ref().map(|p| p.max_ms)),
            ),
        ],
    };
    let traffic = Panel {
        title: "Traffic per node",
        y_label: match r.mode {
            Mode::Quic => "UDP bytes sent per node per s",
            Mode::Sim => "bytes sent per node per s",
            Mode::Processes | Mode::Cluster => "payload bytes sent per node per s",
        },
        series: vec![
            series(
                "idle",
                RGBColor(0x2c, 0xa0, 0x2c),
                false,
                pick(&|x| Some(x.idle.bytes_per_node_s)),
            ),
            series(
                "under write load",
                RGBColor(0xff, 0x7f, 0x0e),
                false,
                pick(&|x| Some(x.load.bytes_per_node_s)),
            ),
        ],
    };
    [propagation, traffic]
}

/// A round top for a y axis at or above `v`, so that the ticks fall on round values and
/// the lines keep clear of the top edge.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A tick label: `20k` rather than `20000`, no decimals on whole numbers.
fn fmt_tick(v: &f64) -> String {
    let v = *v;
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A drawing error, said to be the chart's.
fn draw_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

/// Draws `panel` on `area` against the x axis `x` (N: a whole number, so that ticks fall
/// on whole sizes).
fn draw_panel<X>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel,
    x: X,
    x_label: &str,
) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = usize>,
    X::CoordDescType: Ranged<ValueType = usize> + ValueFormatter<usize>,
{
    let top = nice_max(
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, (FONT, 17).into_font().style(FontStyle::Bold))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x, 0.0..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(panel.y_label)
        .x_label_formatter(&|n| fmt_tick(&(*n as f64)))
        .y_label_formatter(&fmt_tick)
        .y_labels(6)
        // Grid lines at the labelled ticks only: the light in-between lines are noise.
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    let mut labelled = false;
    for s in panel.series.iter().filter(|s| !s.points.is_empty()) {
        let style = s.color.stroke_width(2);
        let color = s.color;
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(s.points.clone(), style))
        }
        .map_err(draw_err)?;
        if s.dashed {
            drawn.legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(0, 0), (8, 0)], style)
                    + PathElement::new([(12, 0), (20, 0)], style)
            })
        } else {
            drawn.legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style))
        }
        .label(s.name);
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(draw_err)?;
        labelled = true;
    }
    // A legend box with no entries would be an empty frame.
    if labelled {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(0xbb, 0xbb, 0xbb))
            .label_font((FONT, 13))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The results as an SVG chart: propagation time and traffic against N.
pub fn svg(r: &Report) -> anyhow::Result<String> {
    let xs: Vec<usize> = r.rows.iter().map(|x| x.nodes).collect();
    let lo = xs.iter().copied().min().unwrap_or(1).max(1);
    let hi = xs.iter().copied().max().unwrap_or(1).max(lo);
    // Sizes spanning 20× or more (100 to 2,000 nodes) would crowd the small ones.
    let log_x = xs.len() > 1 && hi >= 20 * lo;
    let x_label = if log_x {
        "nodes (N), log scale"
    } else {
        "nodes (N)"
    };
    let mode = match r.mode {
        Mode::Quic => "real QUIC on 127.0.0.1",
        Mode::Sim => "simulator",
        Mode::Processes => "gossamer processes on 127.0.0.1",
        Mode::Cluster => "a running cluster, through its admin APIs",
    };
    let footer = format!(
        "gossamer bench, {mode}: fanout {}, gossip {} ms, sync {} ms; {} writes at {}/s",
        r.settings.fanout,
        r.settings.gossip_interval_ms,
        r.settings.sync_interval_ms,
        r.writes,
        r.rate
    );
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (plots, foot) = root.split_vertically(SIZE.1 - 18);
        foot.draw(&Text::new(
            footer,
            (SIZE.0 as i32 - 10, 9),
            (FONT, 13)
                .into_font()
                .color(&RGBColor(0x55, 0x55, 0x55))
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(draw_err)?;
        let (left, right) = plots.split_horizontally(SIZE.0 / 2);
        for (area, panel) in [left, right].iter().zip(panels(r).iter()) {
            // Ticks at the sizes measured, as the table lists them; a margin keeps the
            // end points off the frame.
            if log_x {
                let x = ((lo * 87 / 100).max(1)..hi * 115 / 100)
                    .log_scale()
                    .with_key_points(xs.clone());
                draw_panel(area, panel, x, x_label)?;
            } else {
                let pad = if hi > lo { (hi - lo) * 6 / 100 } else { lo / 2 }.max(1);
                let x = (lo.saturating_sub(pad)..hi + pad).with_key_points(xs.clone());
                draw_panel(area, panel, x, x_label)?;
            }
        }
        root.present().map_err(draw_err)?;
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use gossamer::core::Config;

    use super::super::plan::settings;
    use super::super::report::{Load, Machine, Traffic};
    use super::*;

    /// The series every chart of a full report has, by legend name.
    const NAMES: [&str; 5] = ["p50", "p99", "max", "idle", "under write load"];

    /// A report of `sizes` with made-up figures that grow with N.
    pub(in crate::cli::bench) fn report(mode: Mode, sizes: &[usize]) -> Report {
        let gossip = Config::default();
        let traffic = |b: f64| Traffic {
            window_s: 5.0,
            bytes_per_node_s: b,
            ..Traffic::default()
        };
        let rows = sizes
            .iter()
            .map(|&n| {
                Row::measured(
                    n,
                    &gossip,
                    Load {
                        idle: traffic(300.0 + n as f64),
                        load: traffic(2_000.0 + 10.0 * n as f64),
                        writes: 10,
                        writes_everywhere: 10,
                        propagation_ms: (1..=10).map(|k| k as f64 * (n as f64).ln()).collect(),
                        copies: 20.0 * (n - 1) as f64,
                    },
                )
            })
            .collect();
        Report {
            mode,
            seed: 1,
            version: "0.0.0".into(),
            machine: Machine {
                cpus: 2,
                cpu_model: "test".into(),
                memory_gib: 1.0,
            },
            settings: settings(&gossip),
            writes: 10,
            rate: 20.0,
            idle_s: 5.0,
            partition_s: 10.0,
            crashes: 0,
            command: "gossamer bench".into(),
            rows,
        }
    }

    /// `#RRGGBB` as the SVG backend writes a colour.
    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    /// Checks that `svg` is well-formed SVG in which each series named in `names` (looked
    /// up in `panels`) has its name as a text and a line in its colour: polylines that
    /// together span more than 100 px across, wider than its 20 px legend glyph.
    fn check(svg: &str, panels: &[Panel], names: &[&str]) -> Result<(), String> {
        let doc = roxmltree::Document::parse(svg).map_err(|e| format!("not XML: {e}"))?;
        let root = doc.root_element();
        if !root.has_tag_name(("http://www.w3.org/2000/svg", "svg")) {
            return Err(format!("root element is {:?}", root.tag_name()));
        }
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        for name in names {
            let s = panels
                .iter()
                .flat_map(|p| &p.series)
                .find(|s| s.name == *name)
                .ok_or_else(|| format!("no series {name:?}"))?;
            if !texts.contains(name) {
                return Err(format!("no legend text {name:?}"));
            }
            let color = hex(s.color);
            let xs: Vec<f64> = doc
                .descendants()
                .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(&color))
                .filter_map(|n| n.attribute("points"))
                .flat_map(|p| p.split_whitespace())
                .filter_map(|xy| xy.split(',').next()?.parse::<f64>().ok())
                .collect();
            let span = xs.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b))
                - xs.iter().fold(f64::INFINITY, |a, &b| a.min(b));
            if xs.is_empty() || span <= 100.0 {
                return Err(format!(
                    "no line for {name:?} ({color}): {} points",
                    xs.len()
                ));
            }
        }
        Ok(())
    }

    #[test]
    fn every_series_has_a_line_and_a_legend_entry() {
        for (mode, sizes) in [
            (Mode::Quic, &[10, 25, 50][..]),
            // A 20× span: the log-scale x axis.
            (Mode::Sim, &[100, 1000, 2000][..]),
        ] {
            let r = report(mode, sizes);
            let svg = svg(&r).expect("chart");
            check(&svg, &panels(&r), &NAMES).unwrap_or_else(|e| panic!("{mode:?}: {e}\n{svg}"));
            let doc = roxmltree::Document::parse(&svg).expect("XML");
            let has = |t: &str| {
                doc.descendants()
                    .any(|n| n.text().map(str::trim) == Some(t))
            };
            assert!(has("Time for a write to reach every node"), "{svg}");
            assert!(has("Traffic per node"), "{svg}");
            assert!(has("ms"), "{svg}");
            let log = mode == Mode::Sim;
            assert!(
                has(if log {
                    "nodes (N), log scale"
                } else {
                    "nodes (N)"
                }),
                "{svg}"
            );
        }
    }

    #[test]
    fn the_check_notices_a_missing_series() {
        // Without propagation figures the p50, p99 and max lines are not drawn.
        let mut r = report(Mode::Sim, &[100, 200, 400]);
        for row in &mut r.rows {
            row.propagation = None;
        }
        let svg = svg(&r).expect("chart");
        let err = check(&svg, &panels(&r), &NAMES).expect_err("p50 is missing");
        assert!(err.contains("p50"), "{err}");
        check(&svg, &panels(&r), &["idle", "under write load"]).expect("traffic lines");
        // A name no panel has.
        assert!(check(&svg, &panels(&r), &["p75"]).is_err());
    }

    #[test]
    fn one_row_or_none_still_draws() {
        for sizes in [&[10][..], &[][..]] {
            let r = report(Mode::Quic, sizes);
            let svg = svg(&r).expect("chart");
            roxmltree::Document::parse(&svg).expect("well-formed");
        }
    }
}
