//! Small server-rendered SVG line charts: no script, no external font, no inline style (the
//! console's CSP allows only its own stylesheet), readable without colour thanks to the value
//! printed beside each title.

use std::fmt::Write;

use crate::proxy::respond::escape_html as escape;

const WIDTH: f64 = 320.0;
const HEIGHT: f64 = 96.0;
const PAD_TOP: f64 = 14.0;
const PAD_BOTTOM: f64 = 16.0;
const PAD_LEFT: f64 = 4.0;
const PAD_RIGHT: f64 = 4.0;

/// How a series' values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    PerSecond,
    Percent,
    Seconds,
    Count,
}

impl Unit {
    pub fn format(self, value: f64) -> String {
        match self {
            Self::PerSecond if value >= 100.0 => format!("{value:.0}/s"),
            Self::PerSecond => format!("{value:.1}/s"),
            Self::Percent => format!("{:.1}%", value * 100.0),
            Self::Seconds if value < 1.0 => format!("{:.0} ms", value * 1000.0),
            Self::Seconds => format!("{value:.2} s"),
            Self::Count => format!("{value:.0}"),
        }
    }

    /// The top of the y axis: the largest value, at least a small floor so that a flat line
    /// at zero sits at the bottom instead of the middle.
    fn ceiling(self, max: f64) -> f64 {
        let floor = match self {
            Self::Percent => 0.05,
            Self::Seconds => 0.01,
            Self::PerSecond | Self::Count => 1.0,
        };
        max.max(floor) * 1.1
    }
}

/// One chart: a title, its unit, and points `(unix seconds, value)`; `None` is a gap.
pub struct Chart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub unit: Unit,
    pub points: Vec<(i64, Option<f64>)>,
}

impl Chart<'_> {
    /// The latest known value, as text.
    fn current(&self) -> String {
        self.points
            .iter()
            .rev()
            .find_map(|(_, v)| *v)
            .map_or_else(|| "no data".to_string(), |v| self.unit.format(v))
    }

    pub fn render(&self) -> String {
        let values: Vec<f64> = self.points.iter().filter_map(|(_, v)| *v).collect();
        let max = values.iter().copied().fold(0.0_f64, f64::max);
        let ceiling = self.unit.ceiling(max);
        let (first, last) = match (self.points.first(), self.points.last()) {
            (Some(a), Some(b)) => (a.0, b.0.max(a.0 + 1)),
            _ => (0, 1),
        };
        let plot_w = WIDTH - PAD_LEFT - PAD_RIGHT;
        let plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM;
        let x = |t: i64| PAD_LEFT + plot_w * (t - first) as f64 / (last - first) as f64;
        let y = |v: f64| PAD_TOP + plot_h * (1.0 - (v / ceiling).clamp(0.0, 1.0));
        // Runs of known values become separate polylines, so gaps stay gaps.
        let mut lines = Vec::new();
        let mut current = String::new();
        for (t, v) in &self.points {
            match v {
                Some(v) => {
                    let _ = write!(current, "{:.1},{:.1} ", x(*t), y(*v));
                }
                None if !current.is_empty() => lines.push(std::mem::take(&mut current)),
                None => {}
            }
        }
        if !current.is_empty() {
            lines.push(current);
        }
        let current = self.current();
        let summary = format!(
            "{}: now {current}, highest {} over the last {} minutes",
            self.title,
            if values.is_empty() {
                "no data".to_string()
            } else {
                self.unit.format(max)
            },
            ((last - first) as f64 / 60.0).round().max(1.0)
        );
        let mut svg = String::new();
        let _ = write!(
            svg,
            "<figure class=\"chart\" id=\"chart-{id}\">\n<figcaption><span>{title}</span> <strong>{current}</strong></figcaption>\n\
             <svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" role=\"img\" aria-label=\"{summary}\" xmlns=\"http://www.w3.org/2000/svg\">\n\
             <title>{summary}</title>\n\
             <line class=\"axis\" x1=\"{PAD_LEFT}\" y1=\"{base:.1}\" x2=\"{right:.1}\" y2=\"{base:.1}\"/>\n\
             <line class=\"grid\" x1=\"{PAD_LEFT}\" y1=\"{PAD_TOP}\" x2=\"{right:.1}\" y2=\"{PAD_TOP}\"/>\n\
             <text class=\"label\" x=\"{PAD_LEFT}\" y=\"10\">{top}</text>\n\
             <text class=\"label\" x=\"{PAD_LEFT}\" y=\"{bottom_label:.1}\">{span} min ago</text>\n\
             <text class=\"label end\" x=\"{right:.1}\" y=\"{bottom_label:.1}\">now</text>\n",
            id = escape(self.id),
            title = escape(self.title),
            current = escape(&current),
            summary = escape(&summary),
            base = HEIGHT - PAD_BOTTOM,
            right = WIDTH - PAD_RIGHT,
            top = escape(&self.unit.format(ceiling / 1.1)),
            bottom_label = HEIGHT - 3.0,
            span = ((last - first) as f64 / 60.0).round().max(1.0),
        );
        for points in &lines {
            let points = points.trim_end();
            let _ = writeln!(svg, "<polyline class=\"line\" points=\"{points}\"/>");
            // A run of one point draws no line: mark it, as the latest value is marked.
            if !points.contains(' ')
                && let Some((cx, cy)) = points.split_once(',')
            {
                let _ = writeln!(
                    svg,
                    "<circle class=\"dot\" cx=\"{cx}\" cy=\"{cy}\" r=\"2.5\"/>"
                );
            }
        }
        // The latest value is marked too (a lone last point already is).
        if let Some(last) = lines.last().map(|l| l.trim_end())
            && let Some((cx, cy)) = last.rsplit(' ').next().and_then(|p| p.split_once(','))
            && last.contains(' ')
        {
            let _ = writeln!(
                svg,
                "<circle class=\"dot\" cx=\"{cx}\" cy=\"{cy}\" r=\"2.5\"/>"
            );
        }
        svg.push_str("</svg>\n</figure>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_gaps_scales_and_says_the_current_value() {
        let chart = Chart {
            id: "rps",
            title: "Requests <per> second",
            unit: Unit::PerSecond,
            points: vec![(0, Some(1.0)), (5, Some(3.0)), (10, None), (15, Some(2.0))],
        };
        let svg = chart.render();
        assert_eq!(svg.matches("<polyline").count(), 2, "a gap splits the line");
        assert_eq!(
            svg.matches("<circle").count(),
            1,
            "the lone latest point is marked"
        );
        assert!(svg.contains("<strong>2.0/s</strong>"));
        assert!(svg.contains("Requests &lt;per&gt; second"));
        assert!(svg.contains("highest 3.0/s"));
        assert!(
            !svg.contains("style="),
            "no inline style under the console's CSP"
        );
        assert!(!svg.contains("href"), "nothing loaded from anywhere");
    }

    #[test]
    fn empty_and_flat_series_stay_inside_the_box() {
        let empty = Chart {
            id: "e",
            title: "Errors",
            unit: Unit::Percent,
            points: Vec::new(),
        }
        .render();
        assert!(empty.contains("no data"));
        let flat = Chart {
            id: "f",
            title: "Failures",
            unit: Unit::Count,
            points: vec![(0, Some(0.0)), (60, Some(0.0))],
        }
        .render();
        let base = format!("{:.1}", HEIGHT - PAD_BOTTOM);
        assert!(flat.contains(&format!("4.0,{base} 316.0,{base}")), "{flat}");
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(Unit::Seconds.format(0.0123), "12 ms");
        assert_eq!(Unit::Seconds.format(2.5), "2.50 s");
        assert_eq!(Unit::Percent.format(0.02), "2.0%");
        assert_eq!(Unit::PerSecond.format(1234.0), "1234/s");
    }
}
