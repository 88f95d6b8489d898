//! SVG plots (plotters, SVG backend only: text is left to the viewer's fonts): locks/s against `n` per system,
//! and acquire-latency CDFs per `n`.

use crate::report::{Results, System};
use plotters::prelude::*;
use std::error::Error;
use std::path::{Path, PathBuf};

fn color(s: System) -> RGBColor {
    match s {
        System::Redlock => RGBColor(200, 40, 40),
        System::DsyncTcp => RGBColor(30, 90, 200),
        System::DsyncQuic => RGBColor(20, 140, 60),
    }
}

fn systems(r: &Results) -> Vec<System> {
    let mut s: Vec<System> = r.spread.keys().map(|&(_, s)| s).collect();
    s.sort();
    s.dedup();
    s
}

/// Writes `throughput.svg` and one `latency-cdf-n<N>.svg` per `n` into `dir`; returns the files written.
pub fn render(r: &Results, dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut written = vec![dir.join("throughput.svg")];
    throughput(r, &written[0])?;
    let mut ns: Vec<usize> = r.spread.keys().map(|&(n, _)| n).collect();
    ns.dedup();
    for n in ns {
        let path = dir.join(format!("latency-cdf-n{n}.svg"));
        cdf(r, n, &path)?;
        written.push(path);
    }
    Ok(written)
}

fn throughput(r: &Results, path: &Path) -> Result<(), Box<dyn Error>> {
    let max_n = r.spread.keys().map(|&(n, _)| n).max().unwrap_or(16) as f64;
    let max_rate = r.spread.values().map(|c| c.rate()).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Locks per second, every loop on its own resource (5 loops per node)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..max_n + 2.0, 0.0..max_rate * 1.15)?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .x_labels(max_n as usize / 2 + 2)
        .x_desc("nodes (n)")
        .y_desc("locks/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()?;
    for sys in systems(r) {
        let pts: Vec<(f64, f64)> =
            r.spread.iter().filter(|((_, s), _)| *s == sys).map(|(&(n, _), c)| (n as f64, c.rate())).collect();
        let style = color(sys).stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.clone(), style))?
            .label(sys.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color(sys).filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

fn cdf(r: &Results, n: usize, path: &Path) -> Result<(), Box<dyn Error>> {
    let curves: Vec<(System, Vec<(f64, f64)>)> = r
        .spread
        .iter()
        .filter(|((m, _), c)| *m == n && c.acquire.len() > 0)
        .map(|(&(_, s), c)| (s, c.acquire.cdf_us()))
        .collect();
    let lo = curves.iter().filter_map(|(_, c)| c.first().map(|p| p.0)).fold(f64::MAX, f64::min).max(1.0);
    let hi = curves.iter().filter_map(|(_, c)| c.last().map(|p| p.0)).fold(lo * 10.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Acquire latency CDF, n = {n} (5 loops per node, own resources)"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo * 0.9..hi * 1.1).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .max_light_lines(4)
        .x_desc("acquire latency (µs, log scale)")
        .y_desc("fraction of locks ≤ x")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for (sys, pts) in curves {
        let style = color(sys).stroke_width(2);
        // A step per distinct value: start each curve at zero so it reads as a distribution.
        let first = pts.first().map(|p| (p.0, 0.0));
        chart
            .draw_series(LineSeries::new(first.into_iter().chain(pts), style))?
            .label(sys.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
