//! A hand-written SVG chart of one scenario over time: ok/s and errors/s, p50/p99
//! latency (log scale), and each mock's request rate, with fault windows shaded.

use std::fmt::Write;

use super::runner::ScenarioRun;

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

/// The SVG document for `run`.
pub fn render(run: &ScenarioRun) -> String {
    let span = run.duration_s.max(run.load.series.len() as f64).max(1.0);
    let x = |t: f64| LEFT + (t.clamp(0.0, span) / span) * (WIDTH - LEFT - RIGHT);
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
    let shades = shades(run, span);
    let series = &run.load.series;
    let rate_max = series
        .iter()
        .map(|s| (s.ok + s.errors) as f64)
        .fold(1.0, f64::max)
        * 1.1;
    let lat_max = series
        .iter()
        .map(|s| s.p99_us as f64)
        .fold(1000.0, f64::max)
        * 1.5;
    let mock_rates = mock_rates(run);
    let mock_max = mock_rates
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let panels = [
        (
            "responses / s",
            Panel {
                top: TOP,
                max: rate_max,
                log: false,
            },
        ),
        (
            "latency (µs, log)",
            Panel {
                top: TOP + PANEL + GAP,
                max: lat_max,
                log: true,
            },
        ),
        (
            "mock requests / s",
            Panel {
                top: TOP + 2.0 * (PANEL + GAP),
                max: mock_max,
                log: false,
            },
        ),
    ];
    for (title, p) in &panels {
        frame(&mut svg, title, p, span, &x);
        for s in &shades {
            let _ = writeln!(
                svg,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{PANEL}" fill="#d62728" fill-opacity="0.12"/><text x="{:.1}" y="{:.1}" fill="#d62728">{} fault</text>"##,
                x(s.from),
                p.top,
                (x(s.to) - x(s.from)).max(1.0),
                x(s.from) + 3.0,
                p.top + 12.0,
                escape(&s.mock)
            );
        }
    }
    let at = |s: &crate::loadgen::SecondStats| f64::from(s.second) + 0.5;
    let p = &panels[0].1;
    line(
        &mut svg,
        "#2ca02c",
        &series
            .iter()
            .map(|s| (x(at(s)), p.y(s.ok as f64)))
            .collect::<Vec<_>>(),
    );
    line(
        &mut svg,
        "#d62728",
        &series
            .iter()
            .map(|s| (x(at(s)), p.y(s.errors as f64)))
            .collect::<Vec<_>>(),
    );
    legend(
        &mut svg,
        p.top,
        &[("#2ca02c", "ok / s"), ("#d62728", "errors / s")],
    );
    let p = &panels[1].1;
    let measured: Vec<_> = series.iter().filter(|s| s.p99_us > 0).collect();
    line(
        &mut svg,
        "#1f77b4",
        &measured
            .iter()
            .map(|s| (x(at(s)), p.y(s.p50_us as f64)))
            .collect::<Vec<_>>(),
    );
    line(
        &mut svg,
        "#ff7f0e",
        &measured
            .iter()
            .map(|s| (x(at(s)), p.y(s.p99_us as f64)))
            .collect::<Vec<_>>(),
    );
    legend(&mut svg, p.top, &[("#1f77b4", "p50"), ("#ff7f0e", "p99")]);
    let p = &panels[2].1;
    let mut keys = Vec::new();
    for (i, (name, pts)) in mock_rates.iter().enumerate() {
        let colour = MOCK_COLOURS[i % MOCK_COLOURS.len()];
        line(
            &mut svg,
            colour,
            &pts.iter().map(|&(t, v)| (x(t), p.y(v))).collect::<Vec<_>>(),
        );
        keys.push((colour, name.as_str()));
    }
    legend(&mut svg, p.top, &keys);
    svg.push_str("</svg>\n");
    svg
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
            .filter(|v| *v <= p.max)
            .collect()
    } else {
        (0..=4).map(|i| p.max / 1.1 * f64::from(i) / 4.0).collect()
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
    let step = (span / 10.0).ceil().max(1.0);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{t:.0}s</text>"##,
            x(t),
            p.top + PANEL + 13.0
        );
        t += step;
    }
}

fn line(svg: &mut String, colour: &str, points: &[(f64, f64)]) {
    if points.is_empty() {
        return;
    }
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{}"/>"#,
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
            escape(label)
        );
    }
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

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Escapes text for SVG/XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
