//! The benchmarks' report: one row per bench, its value next to the
//! same-run baseline and their ratio, as a table line or (with `--json`) as
//! one JSON object.

/// Bench name, table label, unit, baseline name.
pub type Names = [&'static str; 4];

/// The ratio (value / baseline) a bench aims for.
pub enum Goal {
    /// The ratio should be at most this.
    AtMost(f64),
    /// The ratio should be at least this.
    AtLeast(f64),
}

/// Column widths of a benchmark's table.
#[derive(Clone, Copy)]
pub struct Widths {
    /// The label column.
    pub label: usize,
    /// Each figure column.
    pub figure: usize,
    /// Each unit column.
    pub unit: usize,
    /// The ratio.
    pub ratio: usize,
}

/// One bench's result.
pub struct Row {
    /// What it is called.
    pub names: Names,
    /// The ratio it aims for.
    pub goal: Goal,
    /// The framework's figure.
    pub value: f64,
    /// The baseline's figure, from the same run.
    pub baseline_value: f64,
}

impl Row {
    /// A row.
    pub fn new(names: Names, goal: Goal, value: f64, baseline_value: f64) -> Self {
        Self {
            names,
            goal,
            value,
            baseline_value,
        }
    }

    /// Value / baseline.
    pub fn ratio(&self) -> f64 {
        self.value / self.baseline_value
    }

    /// The table line.
    pub fn text(&self, w: Widths) -> String {
        let [_, label, unit, baseline] = self.names;
        let unit = if unit == "us" { "µs" } else { unit };
        let ratio = self.ratio();
        let (op, target, met) = match self.goal {
            Goal::AtMost(t) => ("<=", t, ratio <= t),
            Goal::AtLeast(t) => (">=", t, ratio >= t),
        };
        let (value, base) = (figure(self.value), figure(self.baseline_value));
        let missed = if met { "" } else { ", missed" };
        let (l, f, u, r) = (w.label, w.figure, w.unit, w.ratio);
        format!(
            "{label:<l$} {value:>f$} {unit:<u$} {baseline:<20} {base:>f$} {unit:<u$} \
             ratio {ratio:>r$.2} (target {op} {target:.2}{missed})"
        )
    }

    /// The JSON object.
    pub fn json(&self) -> String {
        let [bench, _, unit, baseline] = self.names;
        let (value, base) = (json_number(self.value), json_number(self.baseline_value));
        let ratio = json_number(self.ratio());
        format!(
            "{{\"bench\":\"{bench}\",\"value\":{value},\"unit\":\"{unit}\",\
             \"baseline\":\"{baseline}\",\"baseline_value\":{base},\"ratio\":{ratio}}}"
        )
    }
}

/// Prints the benchmark's header line: on standard error with `--json`
/// (standard output then holds only the JSON objects), else on standard output.
pub fn header(json: bool, header: &str) {
    if json {
        eprintln!("{header}");
    } else {
        println!("{header}");
    }
}

/// Prints the rows, as JSON objects or as table lines.
pub fn print(rows: &[Row], json: bool, widths: Widths) {
    for row in rows {
        if json {
            println!("{}", row.json());
        } else {
            println!("{}", row.text(widths));
        }
    }
}

/// The median of a few measurements.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// A figure with a sensible number of digits.
pub fn figure(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A JSON number: JSON has no NaN or infinity, so those are `null`.
pub fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "null".to_owned()
    }
}

/// GB/s of one single-threaded copy of `src` into `dst`, a buffer already
/// touched (the memory-bandwidth baseline of the benches).
pub fn memcpy_gbps(src: &[f32], dst: &mut [f32]) -> f64 {
    let start = std::time::Instant::now();
    dst.copy_from_slice(src);
    std::hint::black_box(&mut *dst);
    let secs = start.elapsed().as_secs_f64();
    std::mem::size_of_val(src) as f64 / secs / 1e9
}
