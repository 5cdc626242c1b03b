//! What a figure reports: rows comparing a reference with huptime, judged against targets, and
//! printed as Markdown tables (readable in a terminal, and pasted as is into the README).

use crate::stats::{Samples, paired_median};

/// The unit of a measured value, which also decides how it is printed.
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    PerSecond,
    Nanos,
    Millis,
    KiB,
}

impl Unit {
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::PerSecond => format!("{} req/s", thousands(value)),
            Unit::Nanos => format!("{value:.1} ns"),
            Unit::Millis => format!("{value:.2} ms"),
            Unit::KiB => format!("{} KiB", thousands(value)),
        }
    }
}

/// `value` rounded, with spaces between groups of three digits.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(digit);
    }
    if value < -0.5 {
        grouped.insert(0, '-');
    }
    grouped
}

/// What a row's judged value must be.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Ratio huptime / reference, at least this.
    RatioAtLeast(f64),
    /// Ratio huptime / reference, at most this.
    RatioAtMost(f64),
    /// Huptime minus the reference, at most this (in the row's unit).
    AddedAtMost(f64),
    /// Huptime's value alone, at most this (in the row's unit).
    AtMost(f64),
}

impl Target {
    fn describe(self, unit: Unit) -> String {
        match self {
            Target::RatioAtLeast(r) => format!("≥ {r}"),
            Target::RatioAtMost(r) => format!("≤ {r}"),
            Target::AddedAtMost(v) => format!("≤ +{}", unit.format(v)),
            Target::AtMost(v) => format!("≤ {}", unit.format(v)),
        }
    }

    /// How far `value` falls short (0 when met).
    fn shortfall(self, value: f64) -> f64 {
        let short = match self {
            Target::RatioAtLeast(limit) => limit - value,
            Target::RatioAtMost(limit) | Target::AddedAtMost(limit) | Target::AtMost(limit) => {
                value - limit
            }
        };
        // A value that could not be measured (NaN) misses.
        if short.is_nan() {
            f64::INFINITY
        } else {
            short.max(0.0)
        }
    }
}

/// One line of a figure's table.
#[derive(Debug)]
pub struct Row {
    case: String,
    reference: String,
    huptime: String,
    value: f64,
    unit: Unit,
    is_ratio: bool,
    target: Target,
    original: Option<Beside>,
}

/// The original C huptime in a row: its cell and its measure, for comparison (never judged).
#[derive(Debug)]
struct Beside {
    cell: String,
    measure: String,
}

/// `median (min–max)`.
fn cell(samples: &Samples, unit: Unit) -> String {
    format!(
        "{} ({}–{})",
        unit.format(samples.median()),
        unit.format(samples.min()),
        unit.format(samples.max())
    )
}

impl Row {
    /// Compares huptime with the reference as the median of the rounds' ratios.
    pub fn ratio(
        case: impl Into<String>,
        unit: Unit,
        reference: &Samples,
        huptime: &Samples,
        target: Target,
    ) -> Self {
        Self {
            case: case.into(),
            reference: cell(reference, unit),
            huptime: cell(huptime, unit),
            value: paired_median(reference, huptime, |reference, huptime| huptime / reference),
            unit,
            is_ratio: true,
            target,
            original: None,
        }
    }

    /// Compares huptime with the reference as the median of what it adds in each round.
    pub fn added(
        case: impl Into<String>,
        unit: Unit,
        reference: &Samples,
        huptime: &Samples,
        target: Target,
    ) -> Self {
        Self {
            case: case.into(),
            reference: cell(reference, unit),
            huptime: cell(huptime, unit),
            value: paired_median(reference, huptime, |reference, huptime| huptime - reference),
            unit,
            is_ratio: false,
            target,
            original: None,
        }
    }

    /// A single value of huptime's own, without a reference.
    pub fn value(case: impl Into<String>, unit: Unit, value: f64, target: Target) -> Self {
        Self {
            case: case.into(),
            reference: "—".into(),
            huptime: unit.format(value),
            value,
            unit,
            is_ratio: false,
            target,
            original: None,
        }
    }

    /// A ratio of ratios: how huptime's overhead changes between two conditions (`low` and
    /// `high` are huptime / reference under each), with the two ratios as the cells.
    pub fn change(
        case: impl Into<String>,
        low: (&str, f64),
        high: (&str, f64),
        target: Target,
    ) -> Self {
        Self {
            case: case.into(),
            reference: format!("{:.3}× at {}", low.1, low.0),
            huptime: format!("{:.3}× at {}", high.1, high.0),
            value: high.1 / low.1,
            unit: Unit::Nanos,
            is_ratio: true,
            target,
            original: None,
        }
    }

    /// The original C huptime measured like huptime, against `reference`: the row's own, or
    /// the original's own in a row that compares huptime with itself. Without it, the row as
    /// it is.
    pub fn beside(mut self, reference: &Samples, original: Option<&Samples>) -> Self {
        let Some(original) = original else {
            return self;
        };
        let combine: fn(f64, f64) -> f64 = if self.is_ratio {
            |reference, original| original / reference
        } else {
            |reference, original| original - reference
        };
        self.original = Some(Beside {
            cell: cell(original, self.unit),
            measure: self.format(paired_median(reference, original, combine)),
        });
        self
    }

    /// The original's own value, in a [`Row::value`] row.
    pub fn beside_value(mut self, value: f64) -> Self {
        self.original = Some(Beside {
            cell: self.unit.format(value),
            measure: self.format(value),
        });
        self
    }

    /// The original's overhead under the two conditions of a [`Row::change`] row.
    pub fn beside_change(mut self, low: (&str, f64), high: (&str, f64)) -> Self {
        self.original = Some(Beside {
            cell: format!("{:.3}× at {} → {:.3}× at {}", low.1, low.0, high.1, high.0),
            measure: self.format(high.1 / low.1),
        });
        self
    }

    /// A measure (the row's own, or the original's) as this row prints it.
    fn format(&self, value: f64) -> String {
        if self.is_ratio {
            format!("{value:.3}×")
        } else if matches!(self.target, Target::AddedAtMost(_)) {
            format!("+{}", self.unit.format(value)).replace("+-", "−")
        } else {
            self.unit.format(value)
        }
    }

    fn measure(&self) -> String {
        self.format(self.value)
    }

    pub fn met(&self) -> bool {
        self.target.shortfall(self.value) == 0.0
    }

    fn result(&self) -> String {
        match self.target.shortfall(self.value) {
            0.0 => "met".into(),
            short if short.is_infinite() => "**missed** (not measured)".into(),
            short if self.is_ratio => format!("**missed** by {short:.3}"),
            short => format!("**missed** by {}", self.unit.format(short)),
        }
    }
}

/// A note on the noise floor: `control` is a second bare copy measured like huptime (an A/A
/// comparison), so its ratio to `reference` is what chance alone gives.
pub fn control_note(what: &str, reference: &Samples, control: &Samples) -> String {
    let ratio = paired_median(reference, control, |reference, control| control / reference);
    format!(
        "A/A control, {what}: a second bare copy measured the same way ran at {ratio:.3}× the first"
    )
}

/// Prints `rows` as a Markdown table with the given names of the reference and measured columns,
/// and two columns for the original C huptime when a row has it.
pub fn print_table(reference: &str, measured: &str, rows: &[Row]) {
    let beside = rows.iter().any(|row| row.original.is_some());
    let (head, rule) = if beside {
        (" original | original's measure |", " --- | --- |")
    } else {
        ("", "")
    };
    println!("| case | {reference} | {measured} | measure | target | result |{head}");
    println!("| --- | --- | --- | --- | --- | --- |{rule}");
    for row in rows {
        let original = match &row.original {
            Some(original) => format!(" {} | {} |", original.cell, original.measure),
            None if beside => " — | — |".into(),
            None => String::new(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |{original}",
            row.case,
            row.reference,
            row.huptime,
            row.measure(),
            row.target.describe(row.unit),
            row.result()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[f64]) -> Samples {
        values.iter().copied().collect()
    }

    #[test]
    fn ratio_rows_are_judged_on_paired_rounds() {
        let row = Row::ratio(
            "x",
            Unit::PerSecond,
            &samples(&[100.0, 90.0, 110.0]),
            &samples(&[98.0, 99.0, 50.0]),
            Target::RatioAtLeast(0.99),
        );
        assert!(!row.met());
        assert_eq!(row.result(), "**missed** by 0.010");
        let row = Row::ratio(
            "x",
            Unit::Nanos,
            &samples(&[100.0]),
            &samples(&[105.0]),
            Target::RatioAtMost(1.10),
        );
        assert!(row.met());
    }

    #[test]
    fn added_rows_report_the_shortfall_in_their_unit() {
        let row = Row::added(
            "x",
            Unit::Millis,
            &samples(&[10.0]),
            &samples(&[17.5]),
            Target::AddedAtMost(5.0),
        );
        assert_eq!(row.measure(), "+7.50 ms");
        assert_eq!(row.result(), "**missed** by 2.50 ms");
    }

    #[test]
    fn the_original_is_measured_like_the_row() {
        let reference = samples(&[10.0, 20.0]);
        let row = Row::added(
            "x",
            Unit::Millis,
            &reference,
            &samples(&[11.0, 21.0]),
            Target::AddedAtMost(5.0),
        )
        .beside(&reference, Some(&samples(&[14.0, 24.0])));
        let original = row.original.as_ref().unwrap();
        assert_eq!(original.measure, "+4.00 ms");
        assert_eq!(original.cell, "19.00 ms (14.00 ms–24.00 ms)");
        // Comparison only: the original's value does not decide the row.
        assert_eq!(row.measure(), "+1.00 ms");
        assert!(row.met());
    }

    #[test]
    fn unmeasured_values_miss() {
        let row = Row::value("x", Unit::KiB, f64::NAN, Target::AtMost(1.0));
        assert!(!row.met());
        assert_eq!(row.result(), "**missed** (not measured)");
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(1234567.4), "1 234 567");
        assert_eq!(thousands(999.0), "999");
    }
}
