//! The terminal gauge of `usq live`: the live NRQ as a bar and a number with the main
//! acquisition fault's reason beside it, a trend sparkline, and the engine's rates and
//! latencies, redrawn in place.

use std::io::Write;
use std::time::Duration;
use usq::capture::status::SourceStatus;
use usq::checks::Fault;
use usq::engine::{EngineStats, LiveResult};

const TREND: usize = 48;
const BAR: usize = 40;
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const LINES: usize = 5;

pub struct Gauge {
    source: String,
    fps: f64,
    budget_ms: f64,
    trend: std::collections::VecDeque<f64>,
    latest: Option<LiveResult>,
    results: u64,
    nrq_sum: f64,
    /// Results that raised each fault, in the order of `Fault::ALL`.
    fault_results: [u64; Fault::ALL.len()],
    lo: f64,
    hi: f64,
    drawn: bool,
}

impl Gauge {
    pub fn new(source: String, fps: f64, budget_ms: f64) -> Gauge {
        Gauge {
            source,
            fps,
            budget_ms,
            trend: Default::default(),
            latest: None,
            results: 0,
            nrq_sum: 0.0,
            fault_results: [0; Fault::ALL.len()],
            lo: f64::INFINITY,
            hi: f64::NEG_INFINITY,
            drawn: false,
        }
    }

    pub fn add(&mut self, r: &LiveResult) {
        if self.trend.len() == TREND {
            self.trend.pop_front();
        }
        self.trend.push_back(r.nrq);
        self.lo = self.lo.min(r.nrq);
        self.hi = self.hi.max(r.nrq);
        self.results += 1;
        self.nrq_sum += r.nrq;
        for (n, f) in self.fault_results.iter_mut().zip(Fault::ALL) {
            *n += r.faults.contains(f) as u64;
        }
        self.latest = Some(*r);
    }

    /// Position of a score between the lowest and highest seen this session (NRQ has no
    /// fixed scale: it is a log-likelihood under the manifold of the model in use).
    fn unit(&self, v: f64) -> f64 {
        if self.hi > self.lo { ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0) } else { 0.5 }
    }

    /// Draws the gauge over its last drawing, with the frame source's line (a lost capture,
    /// skips, stalls; blank while there is nothing to say).
    pub fn draw(&mut self, out: &mut impl Write, s: &EngineStats, source: &SourceStatus) -> std::io::Result<()> {
        if self.drawn {
            write!(out, "\x1b[{LINES}A")?;
        }
        self.drawn = true;
        let clear = "\x1b[2K";
        writeln!(out, "{clear}usq live  {}  {:.1} fps  budget {:.0} ms", self.source, self.fps, self.budget_ms)?;
        match self.latest {
            Some(r) => {
                // The calibrated index has a fixed scale (the organ's clean frames); without it,
                // the bar spans the NRQs seen this session.
                let unit = r.quality.map_or_else(|| self.unit(r.nrq), |q| q / 100.0);
                let filled = (unit * BAR as f64).round() as usize;
                let colour = if unit < 0.33 {
                    31
                } else if unit < 0.66 {
                    33
                } else {
                    32
                };
                // The reason first and in red: a sonographer acts on it, not on the number.
                let reason = match r.faults.main() {
                    Some(f) => format!("  \x1b[1;31m{}\x1b[0m", f.reason()),
                    None => String::new(),
                };
                // A frame unlike the organ's clean frames has no meaningful NRQ: no number then.
                let number = if r.faults.contains(Fault::OrganMismatch) {
                    format!("{:>9}", "--")
                } else {
                    match r.quality {
                        Some(q) => format!("{:>9.2}  quality {q:>3.0}", r.nrq),
                        None => format!("{:>9.2}", r.nrq),
                    }
                };
                writeln!(
                    out,
                    "{clear}NRQ {number}{reason}  \x1b[{colour}m{}\x1b[0m{}  range {:.1} .. {:.1}  coverage {:>3.0}%",
                    "█".repeat(filled),
                    "░".repeat(BAR - filled),
                    self.lo,
                    self.hi,
                    100.0 * r.coverage
                )?;
            }
            None => writeln!(out, "{clear}NRQ   waiting for the first frame...")?,
        }
        let spark: String =
            self.trend.iter().map(|&v| SPARKS[((self.unit(v) * 7.0).round() as usize).min(7)]).collect();
        writeln!(out, "{clear}trend {spark}")?;
        writeln!(
            out,
            "{clear}scored {}  dropped {}  skipped {}  misses {}  latency p50 {:.1} ms  p99 {:.1} ms  run {:.1} ms",
            s.frames_scored,
            s.frames_dropped,
            s.frames_skipped,
            s.deadline_misses,
            s.latency_p50_ms,
            s.latency_p99_ms,
            s.run_ms
        )?;
        match source_line(source) {
            Some(line) if source.lost_for_s.is_some() => writeln!(out, "{clear}\x1b[1;31m{line}\x1b[0m")?,
            Some(line) => writeln!(out, "{clear}{line}")?,
            None => writeln!(out, "{clear}")?,
        }
        out.flush()
    }

    /// Results per fault raised, e.g. `frozen 12, gain_low 3`; `none` when no result raised one.
    fn fault_summary(&self) -> String {
        let raised: Vec<String> = Fault::ALL
            .iter()
            .zip(&self.fault_results)
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| format!("{} {n}", f.name()))
            .collect();
        if raised.is_empty() { "none".into() } else { raised.join(", ") }
    }

    pub fn summary(&self, s: &EngineStats, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-9);
        format!(
            "usq live: {:.1} s, {} frames pushed, {} scored ({:.1}/s), {} dropped, {} skipped, {} failed, {} deadline misses, \
             latency p50 {:.1} ms p99 {:.1} ms, mean NRQ {}, faults {}",
            secs,
            s.frames_pushed,
            s.frames_scored,
            s.frames_scored as f64 / secs,
            s.frames_dropped,
            s.frames_skipped,
            s.frames_failed,
            s.deadline_misses,
            s.latency_p50_ms,
            s.latency_p99_ms,
            if self.results > 0 { format!("{:.3}", self.nrq_sum / self.results as f64) } else { "-".into() },
            self.fault_summary()
        )
    }
}

/// The frame source's line (a lost capture, skips, stalls), when there is something to say.
fn source_line(s: &SourceStatus) -> Option<String> {
    let lost = match s.lost_for_s {
        Some(t) => format!("CAPTURE LOST for {t:.0} s, reconnecting  "),
        None => String::new(),
    };
    (s.skipped + s.stalls + s.resizes + s.losses > 0).then(|| {
        format!(
            "{lost}source: {} skipped  {} stalls (longest {:.1} s)  {} resized  lost {}  back {}  last: {}",
            s.skipped,
            s.stalls,
            s.longest_stall_s,
            s.resizes,
            s.losses,
            s.reconnects,
            s.last_fault.as_deref().unwrap_or("-")
        )
    })
}
