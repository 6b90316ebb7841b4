//! The latency/bytes trade-off of [`crate::PerfConfig::aggregate_wait`] (`beaufort sim knob`):
//! for each membership size, one run with single votes on the relay trees and one per wait with
//! votes as pieces on the key's tree, as a CSV row each and one SVG curve per size (p99 latency
//! against Mbit/s per member, up + down; docs/AGGREGATION.md §3.8).
//!
//! The figure is written by hand for the reason given in [`crate::paper`]: its text is laid out
//! by the viewer, with no font stack in the build.

use super::paper::number;
use super::report::PerfReport;
use beaufort_sim::config::Micros;
use std::fmt::Write;

/// How one point of the curve sends votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Votes {
    /// Single votes on the per-origin relay trees (the default).
    Single,
    /// Pieces on the key's tree, waiting this long for the other tree links.
    Pieces(Micros),
}

impl Votes {
    /// The label of the point: `single` or the wait in milliseconds.
    pub fn label(self) -> String {
        match self {
            Votes::Single => "single".to_owned(),
            Votes::Pieces(wait) => format!("{} ms", wait / 1000),
        }
    }

    /// The run's [`crate::PerfConfig::aggregate_wait`].
    pub fn aggregate_wait(self) -> Option<Micros> {
        match self {
            Votes::Single => None,
            Votes::Pieces(wait) => Some(wait),
        }
    }
}

/// The CSV header, matching [`csv`]'s rows.
pub const CSV_HEADER: &str = "nodes,votes,rate_per_member,duration_s,submitted,decided,\
p50_ms,p99_ms,bandwidth_mean_mbit,received_per_tx_bytes,floor_bytes,floor_multiple,wall_s";

/// One CSV row per run, after [`CSV_HEADER`].
pub fn csv(points: &[(Votes, PerfReport)]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for (votes, r) in points {
        let b = &r.bytes_per_tx;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.1},{:.1},{:.3},{:.0},{:.0},{:.2},{:.1}",
            r.nodes,
            votes.label(),
            r.rate,
            r.duration_s,
            r.submitted,
            r.decided,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.bandwidth_mbit_per_node.mean,
            b.received_per_tx,
            b.floor,
            b.floor_multiple,
            r.wall_s
        );
    }
    out
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b"];

/// The trade-off curve: one polyline per membership size through its points in the order run,
/// each point labelled with how votes travelled. Bandwidth on a logarithmic axis (single votes
/// and pieces differ by an order of magnitude), latency on a linear one from zero.
pub fn figure(points: &[(Votes, PerfReport)]) -> String {
    let mut sizes: Vec<usize> = points.iter().map(|(_, r)| r.nodes).collect();
    sizes.dedup();
    let mbit = |r: &PerfReport| r.bandwidth_mbit_per_node.mean.max(1e-3);
    let (low, high) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), (_, r)| {
            (lo.min(mbit(r)), hi.max(mbit(r)))
        });
    let (x_lo, x_hi) = if points.is_empty() {
        (0.1, 10.0)
    } else {
        (
            10f64.powf(low.log10().floor()),
            10f64.powf(high.log10().ceil().max(low.log10().floor() + 1.0)),
        )
    };
    let y_hi = points
        .iter()
        .map(|(_, r)| r.latency_ms.p99)
        .fold(0.0, f64::max)
        .max(1.0);
    let y_hi = nice_ceiling(y_hi * 1.1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: f64| LEFT + (v.log10() - x_lo.log10()) / (x_hi.log10() - x_lo.log10()) * plot_w;
    let y = |v: f64| TOP + plot_h - v / y_hi * plot_h;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        svg,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">\
         Latency against bandwidth, by how votes travel</text>",
        WIDTH / 2.0
    );
    // Axes, with a tick per decade of bandwidth and five of latency.
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{0}\" stroke=\"black\"/>",
        TOP + plot_h,
        LEFT + plot_w
    );
    let mut decade = x_lo;
    while decade <= x_hi * 1.0001 {
        let px = x(decade);
        let _ = writeln!(
            svg,
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 16.0,
            number(decade)
        );
        decade *= 10.0;
    }
    for step in 0..=5 {
        let v = y_hi * f64::from(step) / 5.0;
        let py = y(v);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            number(v)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">Mbit/s per member, up + down \
         (mean, log scale)</text>\
         <text transform=\"translate(22 {:.1}) rotate(-90)\" text-anchor=\"middle\">\
         p99 latency (ms)</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 16.0,
        TOP + plot_h / 2.0
    );
    for (i, &n) in sizes.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let curve: Vec<&(Votes, PerfReport)> =
            points.iter().filter(|(_, r)| r.nodes == n).collect();
        let path: Vec<String> = curve
            .iter()
            .map(|(_, r)| format!("{:.1},{:.1}", x(mbit(r)), y(r.latency_ms.p99)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>",
            path.join(" ")
        );
        // Neighbouring points are often close: their labels alternate above and below.
        for (k, (votes, r)) in curve.into_iter().enumerate() {
            let (px, py) = (x(mbit(r)), y(r.latency_ms.p99));
            let dy = if k % 2 == 0 { -6.0 } else { 16.0 };
            let _ = writeln!(
                svg,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{}</text>",
                px + 6.0,
                py + dy,
                votes.label()
            );
        }
        let ly = TOP + 20.0 + 20.0 * i as f64;
        let lx = LEFT + plot_w + 20.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" \
             stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">n = {n}</text>",
            lx + 20.0,
            lx + 26.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{run, PerfConfig, Protocol};

    /// Two points of one size: single votes and pieces, each a row and a labelled point of the
    /// size's curve.
    #[test]
    fn a_curve_per_size_with_a_labelled_point_per_run() {
        let mut points = Vec::new();
        for votes in [Votes::Single, Votes::Pieces(300_000)] {
            let mut cfg = PerfConfig::new(Protocol::Beaufort, 7, 1);
            cfg.duration = 2_000_000;
            cfg.aggregate_wait = votes.aggregate_wait();
            let report = run(&cfg, None).expect("runs");
            points.push((votes, report));
        }
        let table = csv(&points);
        let mut lines = table.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER));
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].starts_with("7,single,") && rows[1].starts_with("7,300 ms,"));
        let columns = CSV_HEADER.split(',').count();
        assert!(rows.iter().all(|row| row.split(',').count() == columns));
        let svg = figure(&points);
        assert_eq!(
            svg.matches("<polyline").count(),
            1,
            "one curve for one size"
        );
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains(">single<") && svg.contains(">300 ms<") && svg.contains(">n = 7<"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn ticks_round_up_to_one_two_or_five() {
        assert_eq!(nice_ceiling(730.0), 1000.0);
        assert_eq!(nice_ceiling(1_210.0), 2000.0);
        assert_eq!(nice_ceiling(4.2), 5.0);
    }
}
