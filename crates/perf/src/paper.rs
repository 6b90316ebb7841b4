//! The paper's evaluation matrix as files (`beaufort sim paper`): one CSV row per run and SVG box
//! plots in the style of seed 002's Fig. 5 (latency by size), Fig. 6 (bandwidth by size) and
//! Fig. 7 (latency under crashes and a Byzantine member), the protocols side by side.
//!
//! Boxes span the quartiles with a line at the median; whiskers reach the 1st and 99th percentiles
//! and a dot marks the maximum; a legend says so. The value axis turns logarithmic when one
//! distribution dwarfs the others (a 44 s tail beside boxes under 2 s), and a protocol that was
//! not run in a scenario is named where its box would be.
//!
//! The SVG is written by hand (a few rectangles and lines per box) rather than with a plotting
//! crate: `plotters`' box plot draws Tukey whiskers (1.5 × IQR) from `f32` quartiles, not the
//! p1/p99 whiskers and maximum these figures compare with the paper, and laying out its text
//! needs its font features (a font stack in the build); here the viewer lays out the text.

use super::report::PerfReport;
use super::{Protocol, Scenario};
use std::fmt::Write;

/// The CSV header, matching [`csv`]'s rows.
pub const CSV_HEADER: &str = "protocol,scenario,nodes,duration_s,submitted,decided,\
p50_ms,p90_ms,p99_ms,max_ms,bandwidth_mean_mbit,bandwidth_max_mbit,upload_mean_mbit,wall_s";

/// One CSV row per run, after [`CSV_HEADER`].
pub fn csv(reports: &[PerfReport]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in reports {
        let l = &r.latency_ms;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.3},{:.3},{:.3},{:.1}",
            r.protocol.name(),
            r.scenario.name(),
            r.nodes,
            r.duration_s,
            r.submitted,
            r.decided,
            l.p50,
            l.p90,
            l.p99,
            l.max,
            r.bandwidth_mbit_per_node.mean,
            r.bandwidth_mbit_per_node.max,
            r.upload_mbit_per_node.mean,
            r.wall_s
        );
    }
    out
}

/// Fig. 5: latency at the submitter by size, optimistic scenario.
pub fn latency_figure(reports: &[PerfReport]) -> String {
    let groups = by_size(reports, Scenario::Optimistic, |r| r.samples.clone());
    box_plot(
        "Latency without failures (cf. paper Fig. 5)",
        "latency (ms)",
        "members (n)",
        &groups,
    )
}

/// Fig. 6: bandwidth (upload + download) per honest member by size, optimistic scenario.
pub fn bandwidth_figure(reports: &[PerfReport]) -> String {
    let groups = by_size(reports, Scenario::Optimistic, |r| {
        r.bandwidth_samples.clone()
    });
    box_plot(
        "Bandwidth per member without failures (cf. paper Fig. 6)",
        "Mbit/s (up + down)",
        "members (n)",
        &groups,
    )
}

/// Fig. 7: latency under 25 % crashes and with one Byzantine member, by size.
pub fn failures_figure(reports: &[PerfReport]) -> String {
    let mut groups = by_size(reports, Scenario::Crash25, |r| r.samples.clone());
    for g in &mut groups {
        g.detail = Some("25 % crashed");
    }
    let byzantine = by_size(reports, Scenario::Byzantine, |r| r.samples.clone());
    for mut g in byzantine {
        g.detail = Some("1 Byzantine");
        groups.push(g);
    }
    groups.sort_by_key(|g| g.order);
    box_plot(
        "Latency with 25 % crashes and one Byzantine member (cf. paper Fig. 7)",
        "latency (ms)",
        "members (n) and failure scenario",
        &groups,
    )
}

/// One x-axis position: a label, the scenario under it when the figure mixes scenarios, and a
/// distribution per protocol that was run there (a protocol absent here was not run).
struct Group {
    label: String,
    detail: Option<&'static str>,
    order: usize,
    boxes: Vec<(Protocol, Vec<f64>)>,
}

fn by_size(
    reports: &[PerfReport],
    scenario: Scenario,
    values: impl Fn(&PerfReport) -> Vec<f64>,
) -> Vec<Group> {
    let mut sizes: Vec<usize> = reports
        .iter()
        .filter(|r| r.scenario == scenario)
        .map(|r| r.nodes)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .map(|n| Group {
            label: format!("n = {n}"),
            detail: None,
            order: n,
            boxes: Protocol::ALL
                .iter()
                .filter_map(|&p| {
                    reports
                        .iter()
                        .find(|r| r.scenario == scenario && r.nodes == n && r.protocol == p)
                        .map(|r| (p, values(r)))
                })
                .collect(),
        })
        .collect()
}

fn colour(p: Protocol) -> &'static str {
    match p {
        Protocol::Beaufort => "#1f77b4",
        Protocol::Pbft => "#d62728",
        Protocol::Tendermint => "#2ca02c",
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// A round axis maximum and tick step covering `max`.
fn axis(max: f64) -> (f64, f64) {
    let max = max.max(1e-9);
    let magnitude = 10f64.powf(max.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| max / s <= 6.0)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

/// When the largest value is this many times the smallest whisker end, a linear axis squashes
/// every other box to a line (one 44 s tail beside boxes under 2 s): the axis is then logarithmic.
const LOG_SPREAD: f64 = 20.0;

/// The value axis: where a value goes (0 at the bottom, 1 at the top) and its ticks.
enum Scale {
    Linear {
        max: f64,
        step: f64,
    },
    /// From `10^lo` to `10^hi`, each a 1-2-5 step.
    Log {
        lo: f64,
        hi: f64,
    },
}

impl Scale {
    /// The scale for values whose smallest whisker end is `low` and largest value `high`.
    fn fit(low: f64, high: f64) -> Scale {
        if low > 0.0 && high / low > LOG_SPREAD {
            // From the 1-2-5 step at or below the lowest value to the one at or above the highest.
            let steps = |v: f64| {
                let decade = v.log10().floor();
                [1.0, 2.0, 5.0, 10.0].map(|m| (m * 10f64.powf(decade)).log10())
            };
            let lo = steps(low)
                .into_iter()
                .filter(|l| *l <= low.log10() + 1e-9)
                .fold(f64::NEG_INFINITY, f64::max);
            let hi = steps(high)
                .into_iter()
                .find(|h| *h >= high.log10() - 1e-9)
                .unwrap_or(high.log10().ceil());
            Scale::Log { lo, hi }
        } else {
            let (max, step) = axis(high);
            Scale::Linear { max, step }
        }
    }

    /// The fraction of the plot's height at which `v` is drawn (clamped to the plot).
    fn place(&self, v: f64) -> f64 {
        match *self {
            Scale::Linear { max, .. } => (v / max).clamp(0.0, 1.0),
            Scale::Log { lo, hi } => {
                ((v.max(10f64.powf(lo)).log10() - lo) / (hi - lo).max(1e-9)).clamp(0.0, 1.0)
            }
        }
    }

    /// Tick values with their labels: multiples of the step, or 1, 2 and 5 per decade.
    fn ticks(&self) -> Vec<(f64, String)> {
        match *self {
            Scale::Linear { max, step } => {
                let count = (max / step).round() as usize;
                (0..=count)
                    .map(|i| {
                        let v = step * i as f64;
                        (v, number(v))
                    })
                    .collect()
            }
            Scale::Log { lo, hi } => {
                let (bottom, top) = (10f64.powf(lo) * 0.9999, 10f64.powf(hi) * 1.0001);
                let mut ticks = Vec::new();
                let mut decade = lo.floor();
                while decade <= hi {
                    for m in [1.0, 2.0, 5.0] {
                        let v = m * 10f64.powf(decade);
                        if (bottom..=top).contains(&v) {
                            ticks.push((v, number(v)));
                        }
                    }
                    decade += 1.0;
                }
                ticks
            }
        }
    }

    /// How the axis says it is logarithmic.
    fn note(&self) -> &'static str {
        match self {
            Scale::Linear { .. } => "",
            Scale::Log { .. } => ", log scale",
        }
    }
}

/// A tick label: no trailing zeros, thousands as "k".
pub(crate) fn number(v: f64) -> String {
    if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn box_plot(title: &str, y_label: &str, x_label: &str, groups: &[Group]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 520.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 80.0;
    const BOTTOM: f64 = 75.0;
    let mut sorted: Vec<(usize, usize, Vec<f64>)> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (bi, (_, values)) in g.boxes.iter().enumerate() {
            let mut v = values.clone();
            v.sort_by(f64::total_cmp);
            sorted.push((gi, bi, v));
        }
    }
    let high = sorted
        .iter()
        .filter_map(|(_, _, v)| v.last().copied())
        .fold(0.0, f64::max);
    let low = sorted
        .iter()
        .filter(|(_, _, v)| !v.is_empty())
        .map(|(_, _, v)| quantile(v, 0.01))
        .fold(f64::INFINITY, f64::min);
    let scale = Scale::fit(low, high);
    let plot_h = H - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h * (1.0 - scale.place(v));
    let slot = (W - LEFT - RIGHT) / groups.len().max(1) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    legend(&mut s, LEFT, 48.0);
    for (tick, label) in scale.ticks() {
        let ty = y(tick);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{}" y2="{ty:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            ty + 4.0,
        );
    }
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}{}</text>"#,
        TOP + plot_h / 2.0,
        escape(y_label),
        scale.note()
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 12.0,
        escape(x_label)
    );
    for (gi, g) in groups.iter().enumerate() {
        let x0 = LEFT + slot * gi as f64;
        if gi > 0 {
            let _ = writeln!(
                s,
                r##"<line x1="{x0:.1}" y1="{TOP}" x2="{x0:.1}" y2="{:.1}" stroke="#eee"/>"##,
                H - BOTTOM
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + slot / 2.0,
            H - BOTTOM + 18.0,
            escape(&g.label)
        );
        if let Some(detail) = g.detail {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
                x0 + slot / 2.0,
                H - BOTTOM + 34.0,
                escape(detail)
            );
        }
        let width = slot / (Protocol::ALL.len() as f64 + 1.0);
        for (pi, p) in Protocol::ALL.iter().enumerate() {
            let cx = x0 + width * (pi as f64 + 1.0);
            let c = colour(*p);
            let Some(bi) = g.boxes.iter().position(|(q, _)| q == p) else {
                // A baseline not run in this scenario: say so where its box would be.
                let _ = writeln!(
                    s,
                    r##"<text transform="translate({:.1} {:.1}) rotate(-90)" font-size="10" fill="#888">{} not run</text>"##,
                    cx + 3.0,
                    H - BOTTOM - 6.0,
                    p.name()
                );
                continue;
            };
            let v = sorted
                .iter()
                .find(|(g2, b2, _)| *g2 == gi && *b2 == bi)
                .map(|(_, _, v)| v.as_slice())
                .unwrap_or_default();
            if v.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<text transform="translate({:.1} {:.1}) rotate(-90)" font-size="10" fill="{c}">no commits</text>"#,
                    cx + 3.0,
                    H - BOTTOM - 6.0,
                );
                continue;
            }
            let [lo, q1, med, q3, hi] = [0.01, 0.25, 0.5, 0.75, 0.99].map(|q| y(quantile(v, q)));
            let max = y(v[v.len() - 1]);
            let half = width * 0.35;
            let _ = writeln!(
                s,
                r#"<g stroke="{c}"><line x1="{cx:.1}" y1="{lo:.1}" x2="{cx:.1}" y2="{hi:.1}"/><rect x="{:.1}" y="{q3:.1}" width="{:.1}" height="{:.1}" fill="{c}" fill-opacity="0.3"/><line x1="{:.1}" y1="{med:.1}" x2="{:.1}" y2="{med:.1}" stroke-width="2"/><circle cx="{cx:.1}" cy="{max:.1}" r="2" fill="{c}"/></g>"#,
                cx - half,
                2.0 * half,
                (q1 - q3).max(0.5),
                cx - half,
                cx + half,
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The protocols' colours and what a box means, in one row at (`x`, `y`).
fn legend(s: &mut String, x: f64, y: f64) {
    let mut lx = x;
    for p in Protocol::ALL {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}" fill-opacity="0.6"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            colour(p),
            lx + 17.0,
            p.name()
        );
        lx += 105.0;
    }
    // A grey sample box: whisker, quartile box, median, maximum.
    let cx = lx + 10.0;
    let _ = writeln!(
        s,
        r##"<g stroke="#555"><line x1="{cx}" y1="{}" x2="{cx}" y2="{}"/><rect x="{}" y="{}" width="12" height="10" fill="#555" fill-opacity="0.25"/><line x1="{}" y1="{}" x2="{}" y2="{}" stroke-width="2"/><circle cx="{cx}" cy="{}" r="2" fill="#555"/></g><text x="{}" y="{y}" fill="#333">box: 25th–75th percentile, bar: median, whiskers: 1st–99th percentile, dot: maximum</text>"##,
        y - 12.0,
        y + 6.0,
        cx - 6.0,
        y - 8.0,
        cx - 6.0,
        y - 3.0,
        cx + 6.0,
        y - 3.0,
        y - 15.0,
        cx + 16.0,
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_tail_gets_a_log_axis_and_close_values_a_linear_one() {
        let Scale::Log { lo, hi } = Scale::fit(150.0, 44_000.0) else {
            panic!("44 s beside 150 ms needs a log axis")
        };
        assert!((lo - 2.0).abs() < 1e-9 && (hi - 50_000f64.log10()).abs() < 1e-9);
        let log = Scale::fit(150.0, 44_000.0);
        assert!(log.place(150.0) > 0.0 && log.place(44_000.0) < 1.0);
        assert!(log.place(1_000.0) > log.place(500.0));
        let labels: Vec<String> = log.ticks().into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels[..4], ["100", "200", "500", "1k"]);
        assert_eq!(labels.last().map(String::as_str), Some("50k"));
        assert!(matches!(Scale::fit(200.0, 1_900.0), Scale::Linear { .. }));
    }

    #[test]
    fn figures_name_their_axes_explain_the_boxes_and_mark_baselines_not_run() {
        let groups = vec![
            Group {
                label: "n = 10".into(),
                detail: Some("25 % crashed"),
                order: 10,
                boxes: vec![
                    (Protocol::Beaufort, vec![200.0, 250.0, 300.0]),
                    (Protocol::Pbft, vec![300.0, 2_000.0, 44_000.0]),
                    (Protocol::Tendermint, vec![]),
                ],
            },
            Group {
                label: "n = 10".into(),
                detail: Some("1 Byzantine"),
                order: 10,
                boxes: vec![(Protocol::Beaufort, vec![210.0, 260.0])],
            },
        ];
        let svg = box_plot(
            "t",
            "latency (ms)",
            "members (n) and failure scenario",
            &groups,
        );
        assert!(svg.contains(">members (n) and failure scenario<"), "{svg}");
        assert!(svg.contains(">latency (ms), log scale<"), "{svg}");
        assert!(svg.contains("whiskers: 1st–99th percentile"), "{svg}");
        assert!(
            svg.contains(">pbft not run<") && svg.contains(">tendermint not run<"),
            "{svg}"
        );
        assert!(svg.contains(">no commits<"), "{svg}");
        assert!(
            svg.contains(">25 % crashed<") && svg.contains(">1 Byzantine<"),
            "{svg}"
        );
        let close = vec![Group {
            label: "n = 10".into(),
            detail: None,
            order: 10,
            boxes: vec![(Protocol::Beaufort, vec![200.0, 300.0])],
        }];
        let linear = box_plot("t", "latency (ms)", "members (n)", &close);
        assert!(linear.contains(">latency (ms)<"), "{linear}");
    }

    #[test]
    fn axes_are_round_and_cover_the_data() {
        for max in [0.3, 7.0, 95.0, 2_400.0, 31_000.0] {
            let (top, step) = axis(max);
            assert!(
                top >= max && top / step <= 6.0 + 1e-9,
                "{max}: {top} {step}"
            );
        }
    }
}
