//! The loss curve written beside the adapter: a self-contained SVG with the training loss per
//! step, its moving average and the validation loss, on labelled axes.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::Result;
use crate::train::checkpoint::StepMetrics;

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 * span {
        out.push(t);
        t += step;
    }
    out
}

/// Render the SVG text for `history` (empty history gives an empty plot with a note).
pub fn svg(history: &[StepMetrics], title: &str) -> String {
    svg_with_metric(history, title, None)
}

/// [`svg`] plus, when `metric` names the task metric of `StepMetrics::task`, its curve on a
/// second y axis at the right: 0–100% for rates and accuracies, the value range for `nll`.
pub fn svg_with_metric(history: &[StepMetrics], title: &str, metric: Option<&str>) -> String {
    let task: Vec<(f64, f64)> = history.iter().filter_map(|m| m.task.filter(|v| v.is_finite()).map(|v| (m.step as f64, v))).collect();
    let metric = metric.filter(|_| !task.is_empty());
    let (w, h) = (800.0, 450.0);
    let (ml, mr, mt, mb) = (70.0, if metric.is_some() { 70.0 } else { 20.0 }, 40.0, 50.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let esc = title.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let _ = writeln!(s, r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{esc}</text>"#, w / 2.0);
    let pts: Vec<(f64, f64)> = history.iter().filter(|m| m.loss.is_finite()).map(|m| (m.step as f64, m.loss)).collect();
    let val: Vec<(f64, f64)> = history.iter().filter_map(|m| m.val_loss.filter(|v| v.is_finite()).map(|v| (m.step as f64, v))).collect();
    if pts.is_empty() {
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">no steps recorded</text></svg>"#, w / 2.0, h / 2.0);
        return s;
    }
    let x0 = pts.first().map_or(0.0, |p| p.0).min(1.0);
    let x1 = pts.last().map_or(1.0, |p| p.0).max(x0 + 1.0);
    let ys = pts.iter().chain(&val).map(|p| p.1);
    let (mut y0, mut y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    y0 = (y0 - pad).max(0.0);
    y1 += pad;
    let sx = |x: f64| ml + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| mt + (1.0 - (y - y0) / (y1 - y0)) * ph;
    // Axes, grid, ticks.
    let _ = writeln!(s, r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
    for t in nice_ticks(y0, y1, 6) {
        let y = sy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{t:.3}</text>"##,
            ml + pw,
            ml - 6.0,
            y + 4.0
        );
    }
    for t in nice_ticks(x0, x1, 8) {
        let x = sx(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{t}</text>"##,
            mt + ph,
            mt + ph + 16.0
        );
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">step</text>"#, ml + pw / 2.0, h - 10.0);
    let _ =
        writeln!(s, r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">loss</text>"#, mt + ph / 2.0, mt + ph / 2.0);
    let line = |s: &mut String, p: &[(f64, f64)], color: &str, width: f64| {
        let d: Vec<String> = p.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = writeln!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="{width}" points="{}"/>"#, d.join(" "));
    };
    line(&mut s, &pts, "#9ecae1", 1.0);
    // Exponential moving average (0.9), as the progress line shows.
    let mut ema = Vec::with_capacity(pts.len());
    let mut acc: Option<f64> = None;
    for &(x, y) in &pts {
        let v = acc.map_or(y, |a| 0.9 * a + 0.1 * y);
        acc = Some(v);
        ema.push((x, v));
    }
    line(&mut s, &ema, "#08519c", 2.0);
    if !val.is_empty() {
        line(&mut s, &val, "#e6550d", 2.0);
        for &(x, y) in &val {
            let _ = writeln!(s, r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#e6550d"/>"##, sx(x), sy(y));
        }
    }
    let mut items: Vec<(&str, String)> = vec![("#9ecae1", "train loss".into()), ("#08519c", "train loss (EMA 0.9)".into())];
    if !val.is_empty() {
        items.push(("#e6550d", "validation loss".into()));
    }
    if let Some(name) = metric {
        // Second axis: percent for rates, the value range for nll.
        let nll = name == "nll";
        let (t0, t1) = if nll {
            let (a, b) = task.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
            let pad = ((b - a) * 0.05).max(1e-3);
            ((a - pad).max(0.0), b + pad)
        } else {
            (0.0, 1.0)
        };
        let ty = |v: f64| mt + (1.0 - (v - t0) / (t1 - t0)) * ph;
        let xr = ml + pw;
        for t in nice_ticks(t0, t1, 5) {
            let label = if nll { format!("{t:.3}") } else { format!("{:.0}%", 100.0 * t) };
            let _ = writeln!(
                s,
                r##"<line x1="{xr}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#31a354"/><text x="{:.1}" y="{:.1}" fill="#31a354">{label}</text>"##,
                xr + 5.0,
                xr + 8.0,
                ty(t) + 4.0,
                y = ty(t)
            );
        }
        let esc = name.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let yc = mt + ph / 2.0;
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{yc}" text-anchor="middle" fill="#31a354" transform="rotate(90 {x:.1} {yc})">{esc}</text>"##,
            x = w - 14.0
        );
        let d: Vec<String> = task.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), ty(y))).collect();
        let _ = writeln!(s, r##"<polyline class="task-metric" fill="none" stroke="#31a354" stroke-width="2" points="{}"/>"##, d.join(" "));
        for &(x, y) in &task {
            let _ = writeln!(s, r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#31a354"/>"##, sx(x), ty(y));
        }
        items.push(("#31a354", format!("{esc} (right axis)")));
    }
    let lx = ml + pw - 230.0;
    let _ = writeln!(s, r##"<rect x="{lx}" y="{}" width="220" height="{}" fill="white" stroke="#aaa"/>"##, mt + 8.0, 8 + 18 * items.len());
    for (i, (c, label)) in items.iter().enumerate() {
        let y = mt + 24.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{label}</text>"#,
            lx + 8.0,
            lx + 32.0,
            lx + 40.0,
            y + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Write [`svg`] to `path` atomically (temp file + rename; no temp file is left on an error).
/// `metric`: the name of the task metric in `StepMetrics::task`, drawn on a second y axis.
pub fn write_svg(path: &Path, history: &[StepMetrics], title: &str, metric: Option<&str>) -> Result<()> {
    crate::util::outpath::write_atomic(path, svg_with_metric(history, title, metric).as_bytes())
}
