//! The paper's evaluation matrix as files (`beaufort sim paper`): one CSV row per run and SVG box
//! plots in the style of seed 002's Fig. 5 (latency by size), Fig. 6 (bandwidth by size) and
//! Fig. 7 (latency under crashes and a Byzantine member), the protocols side by side.
//!
//! The SVG is written by hand (a few rectangles and lines per box), which keeps the build free of
//! plotting and font crates. Boxes span the quartiles with a line at the median; whiskers reach
//! the 1st and 99th percentiles and a dot marks the maximum.

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
        &groups,
    )
}

/// Fig. 7: latency under 25 % crashes and with one Byzantine member, by size.
pub fn failures_figure(reports: &[PerfReport]) -> String {
    let mut groups = by_size(reports, Scenario::Crash25, |r| r.samples.clone());
    for g in &mut groups {
        g.label = format!("{} crash25", g.label);
    }
    let byzantine = by_size(reports, Scenario::Byzantine, |r| r.samples.clone());
    for mut g in byzantine {
        g.label = format!("{} byzantine", g.label);
        groups.push(g);
    }
    groups.sort_by_key(|g| g.order);
    box_plot(
        "Latency with 25 % crashes and one Byzantine member (cf. paper Fig. 7)",
        "latency (ms)",
        &groups,
    )
}

/// One x-axis position: a label and a distribution per protocol.
struct Group {
    label: String,
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

fn box_plot(title: &str, y_label: &str, groups: &[Group]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 480.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 50.0;
    const BOTTOM: f64 = 70.0;
    let top = groups
        .iter()
        .flat_map(|g| g.boxes.iter().flat_map(|(_, v)| v.iter().copied()))
        .fold(0.0, f64::max);
    let (y_max, step) = axis(top);
    let plot_h = H - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h * (1.0 - v / y_max);
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
    let mut tick = 0.0;
    while tick <= y_max + step / 2.0 {
        let ty = y(tick);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{}" y2="{ty:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            ty + 4.0,
            tick
        );
        tick += step;
    }
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (gi, g) in groups.iter().enumerate() {
        let x0 = LEFT + slot * gi as f64;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + slot / 2.0,
            H - BOTTOM + 20.0,
            escape(&g.label)
        );
        let width = slot / (Protocol::ALL.len() as f64 + 1.0);
        for (bi, (p, values)) in g.boxes.iter().enumerate() {
            let cx = x0 + width * (bi as f64 + 1.0);
            let mut v = values.clone();
            v.sort_by(f64::total_cmp);
            if v.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="{}">no data</text>"#,
                    y(0.0) - 4.0,
                    colour(*p)
                );
                continue;
            }
            let [lo, q1, med, q3, hi] = [0.01, 0.25, 0.5, 0.75, 0.99].map(|q| y(quantile(&v, q)));
            let max = y(v[v.len() - 1]);
            let half = width * 0.35;
            let c = colour(*p);
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
    for (i, p) in Protocol::ALL.iter().enumerate() {
        let lx = LEFT + 10.0 + 130.0 * i as f64;
        let ly = H - 22.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{ly}">{}</text>"#,
            ly - 10.0,
            colour(*p),
            lx + 18.0,
            p.name()
        );
    }
    s.push_str("</svg>\n");
    s
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
