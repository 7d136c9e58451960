//! The results as an SVG chart (`--plot`): propagation time and traffic against N.

use std::fmt::Write as _;

use super::args::Mode;
use super::report::{Report, Row};

/// One line of a chart.
struct Series {
    name: &'static str,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
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

fn fmt_tick(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Draws one panel (axes, ticks, lines, legend) at `(x0, y0)` of size `w × h`.
fn panel(
    svg: &mut String,
    (x0, y0, w, h): (f64, f64, f64, f64),
    title: &str,
    y_label: &str,
    xs: &[f64],
    series: &[Series],
    log_x: bool,
) {
    let (l, r, t, b) = (60.0, 15.0, 30.0, 45.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let (xmin, xmax) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let tx = |x: f64| {
        let (a, b, v) = if log_x {
            (xmin.ln(), xmax.ln(), x.ln())
        } else {
            (xmin, xmax, x)
        };
        let f = if b > a { (v - a) / (b - a) } else { 0.5 };
        x0 + l + f * pw
    };
    let ymax = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let ty = |y: f64| y0 + t + ph - (y / ymax) * ph;
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" font-weight="bold">{title}</text>"#,
        x0 + l,
        y0 + 18.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#888"/>"##,
        x0 + l,
        y0 + t
    );
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let y = ty(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            x0 + l,
            x0 + l + pw,
            x0 + l - 5.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
    for &x in xs {
        let px = tx(x);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            y0 + t,
            y0 + t + ph,
            y0 + t + ph + 15.0,
            fmt_tick(x)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">nodes (N){}</text>"#,
        x0 + l + pw / 2.0,
        y0 + h - 8.0,
        if log_x { ", log scale" } else { "" }
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="12" text-anchor="middle">{y_label}</text>"#,
        x0 + 15.0,
        y0 + t + ph / 2.0
    );
    for (k, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", tx(x), ty(y)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="5,4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            pts.join(" "),
            s.color
        );
        for &(x, y) in &s.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                tx(x),
                ty(y),
                s.color
            );
        }
        let ly = y0 + t + 14.0 + 16.0 * k as f64;
        let lx = x0 + l + 10.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            ly - 4.0,
            lx + 20.0,
            ly - 4.0,
            s.color,
            lx + 25.0,
            ly,
            s.name
        );
    }
}

/// The results as an SVG chart: propagation time and traffic against N.
pub fn svg(r: &Report) -> String {
    let (w, h) = (1000.0, 380.0);
    let xs: Vec<f64> = r.rows.iter().map(|x| x.nodes as f64).collect();
    let log_x = xs.len() > 1 && xs.iter().copied().fold(0.0, f64::max) / xs[0] >= 20.0;
    let pick = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(f64, f64)> {
        r.rows
            .iter()
            .filter_map(|x| f(x).map(|y| (x.nodes as f64, y)))
            .collect()
    };
    let prop = [
        Series {
            name: "p50",
            color: "#1f77b4",
            dashed: false,
            points: pick(&|x| x.propagation.as_ref().map(|p| p.p50_ms)),
        },
        Series {
            name: "p99",
            color: "#d62728",
            dashed: false,
            points: pick(&|x| x.propagation.as_ref().map(|p| p.p99_ms)),
        },
        Series {
            name: "max",
            color: "#7f7f7f",
            dashed: true,
            points: pick(&|x| x.propagation.as_ref().map(|p| p.max_ms)),
        },
    ];
    let traffic = [
        Series {
            name: "idle",
            color: "#2ca02c",
            dashed: false,
            points: pick(&|x| Some(x.idle.bytes_per_node_s)),
        },
        Series {
            name: "under write load",
            color: "#ff7f0e",
            dashed: false,
            points: pick(&|x| Some(x.load.bytes_per_node_s)),
        },
    ];
    let mode = if r.mode == Mode::Quic {
        "real QUIC on 127.0.0.1"
    } else {
        "simulator"
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r##"<text x="{:.0}" y="{:.0}" font-size="11" fill="#555" text-anchor="end">gossamer bench, {mode}: fanout {}, gossip {} ms, sync {} ms; {} writes at {}/s</text>"##,
        w - 10.0,
        h - 6.0,
        r.settings.fanout,
        r.settings.gossip_interval_ms,
        r.settings.sync_interval_ms,
        r.writes,
        r.rate
    );
    panel(
        &mut s,
        (0.0, 0.0, w / 2.0, h - 15.0),
        "Time for a write to reach every node",
        "ms",
        &xs,
        &prop,
        log_x,
    );
    let traffic_label = if r.mode == Mode::Quic {
        "UDP bytes sent per node per s"
    } else {
        "bytes sent per node per s"
    };
    panel(
        &mut s,
        (w / 2.0, 0.0, w / 2.0, h - 15.0),
        "Traffic per node",
        traffic_label,
        &xs,
        &traffic,
        log_x,
    );
    s.push_str("</svg>\n");
    s
}
