//! A hand-written SVG chart of one scenario over time: ok/s and errors/s, p50/p99
//! latency (log scale), and each mock's request rate, with fault windows shaded.

use std::fmt::Write;

use super::runner::ScenarioRun;
use crate::loadgen::{LoadReport, SecondStats};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 44.0;
const PANEL: f64 = 150.0;
const GAP: f64 = 42.0;
const MOCK_COLOURS: [&str; 4] = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b"];

/// A fault window: `[from, to)` seconds on `mock`.
struct Shade {
    from: f64,
    to: f64,
    mock: String,
}

/// One panel's vertical mapping.
struct Panel {
    top: f64,
    max: f64,
    log: bool,
}

impl Panel {
    fn y(&self, v: f64) -> f64 {
        let frac = if self.log {
            let lo = 1.0f64;
            (v.max(10f64.powf(lo)).log10() - lo) / (self.max.log10() - lo)
        } else {
            v / self.max
        };
        self.top + PANEL - frac.clamp(0.0, 1.0) * PANEL
    }
}

/// One plotted series: colour, legend label, dashed, points in data space.
struct Series {
    colour: &'static str,
    label: String,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// The SVG document for `run`.
pub fn render(run: &ScenarioRun) -> String {
    let loads = compared_loads(run);
    let span = time_span(run, &loads);
    let height = TOP + 3.0 * (PANEL + GAP);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(&format!(
            "{} — {}{}",
            run.name,
            run.rate
                .map_or("closed loop".to_string(), |r| format!("{r:.0} req/s")),
            if run.stream { ", streaming" } else { "" }
        ))
    );
    let rates: Vec<Series> = loads.iter().flat_map(rate_series).collect();
    let latencies: Vec<Series> = loads.iter().flat_map(latency_series).collect();
    let mocks: Vec<Series> = mock_rates(run)
        .into_iter()
        .enumerate()
        .map(|(i, (label, points))| Series {
            colour: MOCK_COLOURS[i % MOCK_COLOURS.len()],
            label,
            dashed: false,
            points,
        })
        .collect();
    let shades = shades(run, span);
    let panels = [
        ("responses / s", rates, false),
        ("latency (µs, log)", latencies, true),
        ("mock requests / s", mocks, false),
    ];
    for (i, (title, series, log)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        let panel = if *log {
            Panel {
                top,
                max: log_top(max.max(1000.0)),
                log: true,
            }
        } else {
            Panel {
                top,
                max: nice_ticks(max * 1.05, 5).last().copied().unwrap_or(1.0),
                log: false,
            }
        };
        draw_panel(&mut svg, title, &panel, span, &shades, series);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The time axis: the scenario's duration, or for a compare run the length of
/// the slices shown (each a fraction of it).
fn time_span(run: &ScenarioRun, loads: &[(&'static str, &LoadReport)]) -> f64 {
    let seconds = run.load.series.len() as f64;
    if loads.len() > 1 {
        let slice = loads.iter().map(|(_, l)| l.elapsed_s).fold(0.0, f64::max);
        return slice.max(1.0);
    }
    run.duration_s.max(seconds).max(1.0)
}

/// The loads a chart shows: the gateway's, and for a compare run the direct
/// baseline beside it (both at the fixed rate).
fn compared_loads(run: &ScenarioRun) -> Vec<(&'static str, &LoadReport)> {
    match (run.phases.get("direct"), run.phases.get("gateway")) {
        (Some(direct), Some(gateway)) => vec![("gateway", gateway), ("direct", direct)],
        _ => vec![("", &run.load)],
    }
}

fn label(prefix: &str, what: &str) -> String {
    if prefix.is_empty() {
        what.to_string()
    } else {
        format!("{prefix} {what}")
    }
}

/// ok/s and errors/s of one load, over its complete (or scaled) seconds.
fn rate_series(&(name, load): &(&'static str, &LoadReport)) -> Vec<Series> {
    let dashed = name == "direct";
    let pts = plotted_seconds(load);
    let ok = pts.iter().map(|(t, s, k)| (*t, s.ok as f64 * k)).collect();
    let mut out = vec![Series {
        colour: if dashed { "#17becf" } else { "#2ca02c" },
        label: label(name, "ok / s"),
        dashed,
        points: ok,
    }];
    if pts.iter().any(|(_, s, _)| s.errors > 0) || !dashed {
        out.push(Series {
            colour: if dashed { "#e377c2" } else { "#d62728" },
            label: label(name, "errors / s"),
            dashed,
            points: pts
                .iter()
                .map(|(t, s, k)| (*t, s.errors as f64 * k))
                .collect(),
        });
    }
    out
}

/// p50 and p99 of one load, over the seconds that measured something.
fn latency_series(&(name, load): &(&'static str, &LoadReport)) -> Vec<Series> {
    let dashed = name == "direct";
    let pts: Vec<_> = plotted_seconds(load)
        .into_iter()
        .filter(|(_, s, _)| s.p99_us > 0)
        .collect();
    let of = |f: fn(&SecondStats) -> u64| -> Vec<(f64, f64)> {
        pts.iter().map(|(t, s, _)| (*t, f(s) as f64)).collect()
    };
    vec![
        Series {
            colour: if dashed { "#aec7e8" } else { "#1f77b4" },
            label: label(name, "p50"),
            dashed,
            points: of(|s| s.p50_us),
        },
        Series {
            colour: if dashed { "#ffbb78" } else { "#ff7f0e" },
            label: label(name, "p99"),
            dashed,
            points: of(|s| s.p99_us),
        },
    ]
}

/// (mid-second time, second, count scale) for every second worth drawing.
fn plotted_seconds(load: &LoadReport) -> Vec<(f64, &SecondStats, f64)> {
    load.series
        .iter()
        .filter_map(|s| {
            let k = bucket_scale(s.second, load.elapsed_s)?;
            Some((f64::from(s.second) + 0.5, s, k))
        })
        .collect()
}

/// How to draw second `second` of a run measured for `window_s` seconds: counts
/// times the returned factor, or not at all. A last second the run only partly
/// covered would otherwise show as a false drop; half covered or more is scaled
/// up to a per-second rate, less (drain stragglers, a sliver) is left out.
fn bucket_scale(second: u32, window_s: f64) -> Option<f64> {
    if window_s <= 0.0 {
        return Some(1.0);
    }
    let covered = (window_s - f64::from(second)).min(1.0);
    if covered >= 1.0 - 1e-9 {
        Some(1.0)
    } else if covered >= 0.5 {
        Some(1.0 / covered)
    } else {
        None
    }
}

/// Round ticks from 0 to the first one at or above `max`, at most `most`
/// steps, each step 1, 2 or 5 × 10^k.
fn nice_ticks(max: f64, most: usize) -> Vec<f64> {
    let step = nice_step(max, most);
    let n = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=n).map(|i| step * i as f64).collect()
}

/// The smallest 1/2/5 × 10^k step that covers `max` in at most `most` steps.
fn nice_step(max: f64, most: usize) -> f64 {
    let most = most.max(1) as f64;
    if max.is_nan() || max <= 0.0 || max.is_infinite() {
        return 1.0;
    }
    let raw = max / most;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|step| (max / step - 1e-9).ceil() <= most)
        .unwrap_or(10.0 * mag)
}

/// The power of ten at or above `v` (a log panel's top).
fn log_top(v: f64) -> f64 {
    10f64.powf(v.log10().ceil().max(1.0))
}

fn draw_panel(
    svg: &mut String,
    title: &str,
    p: &Panel,
    span: f64,
    shades: &[Shade],
    series: &[Series],
) {
    let x = |t: f64| LEFT + (t.clamp(0.0, span) / span) * (WIDTH - LEFT - RIGHT);
    frame(svg, title, p, span, &x);
    shade_windows(svg, p, shades, &x);
    for s in series {
        let pts: Vec<_> = s.points.iter().map(|&(t, v)| (x(t), p.y(v))).collect();
        line(svg, s.colour, s.dashed, &pts);
    }
    let keys: Vec<_> = series
        .iter()
        .map(|s| (s.colour, s.label.as_str()))
        .collect();
    legend(svg, p.top, &keys);
}

/// Fault windows shaded, each label on the first row where it does not run into
/// an earlier one, and kept inside the panel.
fn shade_windows(svg: &mut String, p: &Panel, shades: &[Shade], x: &impl Fn(f64) -> f64) {
    let right = WIDTH - RIGHT;
    let mut rows: Vec<f64> = Vec::new();
    for s in shades {
        let text = format!("{} fault", s.mock);
        let width = text_width(&text);
        let from = (x(s.from) + 3.0).min(right - width - 3.0).max(LEFT + 3.0);
        let row = rows
            .iter()
            .position(|end| *end < from)
            .unwrap_or(rows.len());
        if row == rows.len() {
            rows.push(0.0);
        }
        rows[row] = from + width + 6.0;
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{PANEL}" fill="#d62728" fill-opacity="0.12"/><text x="{from:.1}" y="{:.1}" fill="#d62728">{}</text>"##,
            x(s.from),
            p.top,
            (x(s.to) - x(s.from)).max(1.0),
            p.top + 12.0 + 13.0 * row as f64,
            escape(&text)
        );
    }
}

/// A generous estimate of `text`'s width at font-size 11 (no font metrics here).
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 6.5
}

fn frame(svg: &mut String, title: &str, p: &Panel, span: f64, x: &impl Fn(f64) -> f64) {
    let right = WIDTH - RIGHT;
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text><rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{PANEL}" fill="none" stroke="#888"/>"##,
        p.top - 6.0,
        escape(title),
        p.top,
        right - LEFT
    );
    let ticks: Vec<f64> = if p.log {
        (1..10)
            .map(|e| 10f64.powi(e))
            .filter(|v| *v <= p.max * (1.0 + 1e-9))
            .collect()
    } else {
        nice_ticks(p.max, 5)
    };
    for v in ticks {
        let y = p.y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{right}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 4.0,
            y + 4.0,
            short(v)
        );
    }
    for t in nice_ticks(span, 10)
        .into_iter()
        .filter(|t| *t <= span + 1e-9)
    {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}s</text>"##,
            x(t),
            p.top + PANEL + 13.0,
            short(t)
        );
    }
}

fn line(svg: &mut String, colour: &str, dashed: bool, points: &[(f64, f64)]) {
    if let [(x, y)] = points {
        // One point (a slice shorter than two seconds) draws no line: a dot.
        let _ = writeln!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"/>"#
        );
        return;
    }
    if points.is_empty() {
        return;
    }
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.6"{} points="{}"/>"#,
        if dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        },
        pts.join(" ")
    );
}

fn legend(svg: &mut String, top: f64, keys: &[(&str, &str)]) {
    let x = WIDTH - RIGHT + 12.0;
    for (i, (colour, label)) in keys.iter().enumerate() {
        let y = top + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 18.0,
            x + 24.0,
            y + 4.0,
            escape(&fit(label, RIGHT - 36.0))
        );
    }
}

/// `label` cut (with an ellipsis) to fit `width`, so it cannot run off the chart.
fn fit(label: &str, width: f64) -> String {
    if text_width(label) <= width {
        return label.to_string();
    }
    let keep = ((width / 6.5) as usize).saturating_sub(1);
    let mut out: String = label.chars().take(keep).collect();
    out.push('…');
    out
}

use super::timeline::CONTINUATION_PREFIX;

/// Fault windows from the applied timeline: from a non-`none` step until the next
/// step for the same mock (or the end).
fn shades(run: &ScenarioRun, span: f64) -> Vec<Shade> {
    let mut out = Vec::new();
    let steps = &run.timeline.applied;
    let is_fault = |s: &&super::timeline::AppliedStep| !s.fault.starts_with(CONTINUATION_PREFIX);
    for (i, step) in steps.iter().enumerate() {
        if step.fault.contains("\"none\"") || !is_fault(&step) {
            continue;
        }
        let to = steps[i + 1..]
            .iter()
            .filter(is_fault)
            .find(|s| s.mock == step.mock)
            .map_or(span, |s| s.at_s);
        out.push(Shade {
            from: step.at_s,
            to,
            mock: step.mock.clone(),
        });
    }
    out
}

/// Per mock: (time, requests/s) over ~0.5 s steps of the sampled counters.
fn mock_rates(run: &ScenarioRun) -> Vec<(String, Vec<(f64, f64)>)> {
    let log = &run.timeline;
    let samples: Vec<_> = log.samples.iter().filter(|s| s.t_s >= 0.0).collect();
    log.mocks
        .iter()
        .enumerate()
        .map(|(m, name)| {
            let pts = samples
                .windows(6)
                .step_by(5)
                .filter_map(|w| {
                    let (a, b) = (w[0], w[w.len() - 1]);
                    let dt = b.t_s - a.t_s;
                    (dt > 0.0).then(|| {
                        let n = b.requests[m].saturating_sub(a.requests[m]) as f64;
                        ((a.t_s + b.t_s) / 2.0, n / dt)
                    })
                })
                .collect();
            (name.clone(), pts)
        })
        .collect()
}

/// A tick value in as few characters as it takes to stay exact for round ticks
/// (1.5k, 250, 0.2).
fn short(v: f64) -> String {
    let (scaled, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{scaled:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

/// Escapes text for SVG/XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        for (max, most, want) in [
            (0.0, 5, vec![0.0, 1.0]),
            (1.0, 5, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
            (3.15, 5, vec![0.0, 1.0, 2.0, 3.0, 4.0]),
            (7.0, 5, vec![0.0, 2.0, 4.0, 6.0, 8.0]),
            (10.0, 5, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]),
            (11.0, 5, vec![0.0, 5.0, 10.0, 15.0]),
            (1234.0, 5, vec![0.0, 500.0, 1000.0, 1500.0]),
            (
                37.0,
                10,
                vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0],
            ),
            (120.0, 10, vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0]),
        ] {
            let got = nice_ticks(max, most);
            assert_eq!(got.len(), want.len(), "{max}/{most}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-9, "{max}/{most}: {got:?} != {want:?}");
            }
        }
    }

    #[test]
    fn every_step_is_one_two_or_five_times_a_power_of_ten() {
        for i in 1..2000 {
            let max = f64::from(i) * 0.731;
            let step = nice_step(max, 5);
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6),
                "{max}: step {step}"
            );
            assert!((max / step - 1e-9).ceil() <= 5.0, "{max}: step {step}");
        }
    }

    #[test]
    fn last_bucket_is_scaled_or_dropped_never_a_false_zero() {
        for (second, window, want) in [
            (0, 10.0, Some(1.0)),
            (9, 10.0, Some(1.0)),
            (9, 9.5, Some(2.0)),
            (9, 9.8, Some(1.25)),
            (9, 9.3, None),
            (10, 10.0, None),
            (12, 10.0, None),
            (3, 0.0, Some(1.0)),
        ] {
            let got = bucket_scale(second, window);
            let same = match (got, want) {
                (Some(g), Some(w)) => (g - w).abs() < 1e-9,
                (g, w) => g == w,
            };
            assert!(same, "{second} of {window}: {got:?} != {want:?}");
        }
    }

    #[test]
    fn tick_labels_stay_exact() {
        for (v, want) in [
            (0.0, "0"),
            (0.2, "0.2"),
            (250.0, "250"),
            (1500.0, "1.5k"),
            (2e6, "2M"),
        ] {
            assert_eq!(short(v), want);
        }
    }

    #[test]
    fn long_legend_labels_are_cut_to_fit() {
        assert_eq!(fit("p50", 100.0), "p50");
        let cut = fit(&"x".repeat(60), RIGHT - 36.0);
        assert!(text_width(&cut) <= RIGHT - 36.0, "{cut}");
        assert!(cut.ends_with('…'));
    }

    /// 10 full seconds at 100 ok/s plus a drain second of 3 stragglers.
    fn load(p50: u64) -> LoadReport {
        let mut load = super::super::runner::empty_report();
        load.elapsed_s = 10.2;
        load.series = (0..11)
            .map(|second| SecondStats {
                second,
                ok: if second < 10 { 100 } else { 3 },
                p50_us: p50,
                p99_us: p50 * 2,
                ..SecondStats::default()
            })
            .collect();
        load
    }

    fn compare_run() -> ScenarioRun {
        let mut phases = std::collections::BTreeMap::new();
        phases.insert("direct".to_string(), load(500));
        phases.insert("gateway".to_string(), load(700));
        ScenarioRun {
            name: "baseline".into(),
            description: String::new(),
            kind: "compare",
            rate: Some(100.0),
            duration_s: 10.0,
            stream: false,
            gateway_cpus: "0".into(),
            load: load(700),
            phases,
            slices: std::collections::BTreeMap::new(),
            timeline: super::super::timeline::TimelineLog::default(),
            fault_start_s: None,
            heal_s: None,
            planned_fault_start_s: None,
            planned_heal_s: None,
            settle_s: 0.0,
            neighbour: None,
            efficiency: None,
            cluster: None,
        }
    }

    #[test]
    fn baseline_chart_shows_direct_and_gateway_without_a_false_last_drop() {
        let svg = render(&compare_run());
        for label in [
            "gateway ok / s",
            "direct ok / s",
            "gateway p50",
            "direct p99",
        ] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label}\n{svg}");
        }
        assert!(svg.contains("stroke-dasharray"), "direct is dashed");
        // The drain second (3 answers in a 0.2 s sliver) is left out: every ok/s
        // line has the 10 full seconds only, all at the same height.
        let ok_lines: Vec<&str> = svg
            .lines()
            .filter(|l| l.contains("<polyline") && (l.contains("#2ca02c") || l.contains("#17becf")))
            .collect();
        assert_eq!(ok_lines.len(), 2, "{svg}");
        for l in ok_lines {
            let pts = l
                .split("points=\"")
                .nth(1)
                .unwrap_or("")
                .trim_end_matches("\"/>");
            let ys: Vec<&str> = pts.split(' ').filter_map(|p| p.split(',').nth(1)).collect();
            assert_eq!(ys.len(), 10, "{l}");
            assert!(ys.iter().all(|y| *y == ys[0]), "{l}");
        }
    }

    #[test]
    fn fault_labels_that_would_collide_go_on_separate_rows() {
        let shade = |from: f64, mock: &str| Shade {
            from,
            to: from + 2.0,
            mock: mock.into(),
        };
        let panel = Panel {
            top: 0.0,
            max: 1.0,
            log: false,
        };
        let x = |t: f64| LEFT + t * 10.0;
        let mut svg = String::new();
        let shades = [
            shade(1.0, "primary"),
            shade(1.5, "fallback"),
            shade(60.0, "third"),
        ];
        shade_windows(&mut svg, &panel, &shades, &x);
        let rows: Vec<&str> = svg
            .lines()
            .filter_map(|l| {
                l.split("<text")
                    .nth(1)?
                    .split("y=\"")
                    .nth(1)?
                    .split('"')
                    .next()
            })
            .collect();
        // primary and fallback overlap: two rows; third is far right: back to row 0.
        assert_eq!(rows, ["12.0", "25.0", "12.0"], "{svg}");
        // Every label starts inside the plot and ends before the legend.
        assert!(!svg.contains("x=\"-"), "{svg}");
    }
}
