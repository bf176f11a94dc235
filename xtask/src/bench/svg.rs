//! A grouped bar chart as plain SVG text.
//!
//! One group of bars per workload (and a last group for the geometric mean), one bar per
//! allocator, values normalised so the reference allocator is 1.0, with a dashed line at 1.0.
//! Each bar carries its value above it (rotated, so neighbouring labels do not collide) and a
//! tooltip. The y axis stops at [`Y_CAP`] so one extreme ratio does not flatten the rest: a bar
//! past it is cut at the top, marked with a break, and labelled with its real value.

use std::fmt::Write as _;

/// The highest value the y axis shows.
pub const Y_CAP: f64 = 3.0;

/// One series of bars (an allocator): its name and colour.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    /// Legend name.
    pub name: &'static str,
    /// Fill colour (any SVG colour).
    pub color: &'static str,
}

/// The colour of each allocator's bars.
pub fn color_of(alloc: &str) -> &'static str {
    match alloc {
        "fam" => "#e66101",
        "mimalloc" => "#2c7bb6",
        "mimalloc3" => "#abd9e9",
        "jemalloc" => "#1a9641",
        "glibc" => "#8c8c8c",
        _ => "#5e3c99",
    }
}

/// What a chart shows.
#[derive(Clone, Debug)]
pub struct Chart<'a> {
    /// The title line.
    pub title: &'a str,
    /// A smaller line under it (the command, the run's shape).
    pub subtitle: &'a str,
    /// The y axis label.
    pub y_label: &'a str,
    /// What the dashed line at 1.0 stands for ("glibc = 1.0").
    pub reference: &'a str,
    /// The series, in bar order within a group.
    pub series: &'a [Series],
    /// The groups: a label and one value per series (`None`: no bar, "n/a").
    pub groups: &'a [(String, Vec<Option<f64>>)],
}

const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const BAR_W: f64 = 18.0;
const BAR_GAP: f64 = 2.0;
const GROUP_GAP: f64 = 30.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 110.0;
const TOP: f64 = 100.0;
const PLOT_H: f64 = 340.0;
const BOTTOM: f64 = 70.0;
const MIN_PLOT_W: f64 = 760.0;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round axis top and tick step for values up to `max`.
fn axis(max: f64) -> (f64, f64) {
    let top = max.clamp(1.0, Y_CAP) * 1.12;
    let step = [0.1, 0.2, 0.25, 0.5, 1.0]
        .into_iter()
        .find(|s| top / s <= 8.0)
        .unwrap_or(1.0);
    ((top / step).ceil() * step, step)
}

/// The chart as an SVG document.
pub fn render(c: &Chart<'_>) -> String {
    let n = c.series.len().max(1) as f64;
    let bars_w = n * BAR_W + (n - 1.0) * BAR_GAP;
    let groups = c.groups.len().max(1) as f64;
    // Few groups spread out over a minimum width, so the title and the legend fit.
    let group_w = (bars_w + GROUP_GAP).max(MIN_PLOT_W / groups);
    let width = LEFT + group_w * groups + RIGHT;
    let height = TOP + PLOT_H + BOTTOM;
    let max = c
        .groups
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .copied()
        .fold(1.0, f64::max);
    let (y_top, step) = axis(max);
    let y = |v: f64| TOP + PLOT_H - v.min(y_top) / y_top * PLOT_H;
    let plot_right = width - RIGHT;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="{FONT}">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="28" font-size="19" font-weight="bold" fill="#222">{}</text>"##,
        esc(c.title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="50" font-size="13" fill="#555">{}</text>"##,
        esc(c.subtitle)
    );
    // Legend, one entry per series, in a row.
    let mut lx = LEFT;
    for se in c.series {
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="66" width="14" height="14" fill="{}"/><text x="{}" y="78" font-size="14" fill="#222">{}</text>"##,
            se.color,
            lx + 20.0,
            esc(se.name)
        );
        lx += 30.0 + 9.0 * se.name.len() as f64;
    }
    // Grid lines and y ticks.
    let mut v = 0.0;
    while v <= y_top + 1e-9 {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{plot_right:.1}" y2="{yy:.1}" stroke="#e3e3e3"/><text x="{}" y="{:.1}" font-size="13" text-anchor="end" fill="#333">{}</text>"##,
            LEFT - 8.0,
            yy + 4.5,
            trim_float(v)
        );
        v += step;
    }
    // Axes.
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{:.1}" x2="{plot_right:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + PLOT_H,
        TOP + PLOT_H,
        TOP + PLOT_H
    );
    let _ = writeln!(
        s,
        r##"<text transform="translate(24,{:.1}) rotate(-90)" font-size="14" text-anchor="middle" fill="#222">{}</text>"##,
        TOP + PLOT_H / 2.0,
        esc(c.y_label)
    );
    // Bars; their value labels go into `labels`, drawn after the reference line so the line
    // never crosses a number.
    let mut labels = String::new();
    for (gi, (label, values)) in c.groups.iter().enumerate() {
        let g0 = LEFT + gi as f64 * group_w;
        let gx = g0 + (group_w - bars_w) / 2.0;
        if gi + 1 == c.groups.len() && label.contains("mean") && gi > 0 {
            // Set the summary group apart.
            let sx = g0;
            let _ = writeln!(
                s,
                r##"<line x1="{sx:.1}" y1="{TOP}" x2="{sx:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="3,3"/>"##,
                TOP + PLOT_H + 40.0
            );
        }
        for (si, se) in c.series.iter().enumerate() {
            let bx = gx + si as f64 * (BAR_W + BAR_GAP);
            let cx = bx + BAR_W / 2.0;
            let Some(val) = values.get(si).copied().flatten() else {
                let _ = writeln!(
                    labels,
                    r##"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="11" fill="#999">n/a</text>"##,
                    cx + 4.0,
                    TOP + PLOT_H - 4.0
                );
                continue;
            };
            let top = y(val);
            let _ = writeln!(
                s,
                r#"<rect x="{bx:.1}" y="{top:.1}" width="{BAR_W}" height="{:.1}" fill="{}"><title>{}: {} = {val:.2}</title></rect>"#,
                TOP + PLOT_H - top,
                se.color,
                esc(label),
                esc(se.name)
            );
            let text = format!("{val:.2}");
            if val > y_top {
                // Cut: a white break across the top of the bar, the label inside it.
                let _ = writeln!(
                    s,
                    r#"<path d="M{:.1},{:.1} l{BAR_W},-6 v5 l-{BAR_W},6 z" fill="white"/>"#,
                    bx,
                    top + 14.0
                );
                let _ = writeln!(
                    labels,
                    r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="11" text-anchor="end" fill="white" font-weight="bold">{text}</text>"#,
                    cx + 4.0,
                    top + 22.0
                );
            } else {
                // A white outline under the label keeps it readable over the 1.0 line (drawn
                // as its own text, as not every renderer knows `paint-order`).
                let (lx, ly) = (cx + 4.0, top - 4.0);
                let _ = writeln!(
                    labels,
                    r##"<text transform="translate({lx:.1},{ly:.1}) rotate(-90)" font-size="11" fill="none" stroke="white" stroke-width="3">{text}</text><text transform="translate({lx:.1},{ly:.1}) rotate(-90)" font-size="11" fill="#222">{text}</text>"##
                );
            }
        }
        // A label of several words goes on several lines, so it stays under its group.
        let lx = g0 + group_w / 2.0;
        let bold = if label.contains("mean") {
            r#" font-weight="bold""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r##"<text x="{lx:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="#222"{bold}>"##,
            TOP + PLOT_H + 20.0
        );
        for (i, word) in label.split(' ').enumerate() {
            let dy = if i == 0 { 0.0 } else { 15.0 };
            let _ = write!(s, r#"<tspan x="{lx:.1}" dy="{dy}">{}</tspan>"#, esc(word));
        }
        let _ = writeln!(s, "</text>");
    }
    // The reference line at 1.0, over the bars, under their labels.
    let yr = y(1.0);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{yr:.1}" x2="{plot_right:.1}" y2="{yr:.1}" stroke="#111" stroke-width="1.5" stroke-dasharray="6,4"/><text x="{:.1}" y="{:.1}" font-size="13" fill="#111">{}</text>"##,
        plot_right + 6.0,
        yr + 4.5,
        esc(c.reference)
    );
    s.push_str(&labels);
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle" fill="#222">workload</text>"##,
        LEFT + (plot_right - LEFT) / 2.0,
        height - 20.0
    );
    s.push_str("</svg>\n");
    s
}

/// `v` with no trailing zeros: 1, 1.5, 0.25.
fn trim_float(v: f64) -> String {
    let t = format!("{v:.2}");
    t.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(groups: &[(String, Vec<Option<f64>>)]) -> String {
        let series = [
            Series {
                name: "fam",
                color: color_of("fam"),
            },
            Series {
                name: "glibc",
                color: color_of("glibc"),
            },
        ];
        render(&Chart {
            title: "Time <normalised>",
            subtitle: "cargo xtask bench",
            y_label: "time / glibc",
            reference: "glibc = 1.0",
            series: &series,
            groups,
        })
    }

    #[test]
    fn draws_every_bar_legend_and_label() {
        let groups = vec![
            ("larson".to_owned(), vec![Some(0.5), Some(1.0)]),
            ("large".to_owned(), vec![None, Some(1.0)]),
            ("geometric mean".to_owned(), vec![Some(0.7), Some(1.0)]),
        ];
        let svg = chart(&groups);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        // 5 bars plus the background plus 2 legend swatches.
        assert_eq!(svg.matches("<rect").count(), 5 + 1 + 2);
        assert!(svg.contains(">n/a<"));
        assert!(svg.contains(">larson<") && svg.contains(">geometric<"));
        assert!(svg.contains("Time &lt;normalised&gt;"));
        assert!(svg.contains(">0.50<") && svg.contains(">glibc = 1.0<"));
        assert!(svg.contains("time / glibc"));
        // Tags balance (a rough well-formedness check).
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn cuts_bars_past_the_cap() {
        let groups = vec![("large".to_owned(), vec![Some(12.5), Some(1.0)])];
        let svg = chart(&groups);
        assert!(svg.contains(">12.50<"));
        assert!(svg.contains("<path"));
        let (top, step) = axis(12.5);
        assert!((Y_CAP..=Y_CAP * 1.2).contains(&top), "{top}");
        assert!(step > 0.0);
        assert!((axis(0.3).0 - 1.2).abs() < 1e-9);
    }
}
