//! `huptime-bench`: the figures huptime's performance targets are judged by. Each figure runs
//! the bare program and the same under huptime, interleaved (A B A B …) in one run, and prints
//! a Markdown table of medians, ranges, ratios and whether each target is met.
//!
//!     cargo build --release --workspace
//!     cargo run --release -p huptime-bench -- [--short|--full] [--huptime PATH] [--original PATH] [FIGURE...]

mod figures;
mod generations;
mod load;
mod machine;
mod report;
mod servers;
mod setup;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use figures::{Context, FIGURES, Failure, Figure, Mode};
use setup::Setup;

const USAGE: &str = "\
usage: huptime-bench [--short | --full] [--huptime PATH] [--original PATH] [FIGURE...]

  --short          a few seconds per figure (a smoke test: its figures mean little)
  --full           the figures the README reports (the default)
  --huptime PATH   the huptime launcher to measure, with libhuptime.so beside it (default: the
                   one beside this executable, i.e. of the same cargo profile)
  --original PATH  also measure the original C huptime (github.com/amscanne/huptime), built
                   with its `make build`: its lib/huptime/huptime.so or its bin/huptime. Every
                   figure runs it in the same rounds, as its launcher runs a program, and
                   shows it in two more columns (for comparison: never judged)
  FIGURE           a number or a name; all figures when none is given:";

struct Args {
    mode: Mode,
    huptime: Option<PathBuf>,
    original: Option<PathBuf>,
    figures: Vec<&'static Figure>,
}

fn usage() -> String {
    let names: Vec<String> = FIGURES
        .iter()
        .map(|f| format!("                   {} {:<12} {}", f.number, f.name, f.title))
        .collect();
    format!("{USAGE}\n{}", names.join("\n"))
}

/// The arguments in `words` (without the program's name); `None` for `--help`.
fn parse_args(mut words: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        mode: Mode::Full,
        huptime: None,
        original: None,
        figures: Vec::new(),
    };
    while let Some(word) = words.next() {
        match word.as_str() {
            "--short" => args.mode = Mode::Short,
            "--full" => args.mode = Mode::Full,
            "--huptime" => {
                args.huptime = Some(words.next().ok_or("--huptime needs a path")?.into());
            }
            "--original" => {
                args.original = Some(words.next().ok_or("--original needs a path")?.into());
            }
            "-h" | "--help" => return Ok(None),
            name => {
                let figure = FIGURES
                    .iter()
                    .find(|f| f.name == name || f.number.to_string() == name)
                    .ok_or_else(|| format!("unknown figure or option {name:?}"))?;
                args.figures.push(figure);
            }
        }
    }
    if args.figures.is_empty() {
        args.figures = FIGURES.iter().collect();
    }
    Ok(Some(args))
}

/// Counts of the figures' outcomes, for the last line.
#[derive(Default)]
struct Totals {
    met: usize,
    missed: usize,
    skipped: usize,
    failed: usize,
}

fn run_figure(figure: &Figure, ctx: &Context<'_>, totals: &mut Totals) {
    println!("\n### {}. {}\n", figure.number, figure.title);
    let started = Instant::now();
    let outcome = (figure.run)(ctx);
    let seconds = started.elapsed().as_secs_f64();
    let leftovers = servers::end_children();
    if leftovers > 0 {
        println!("(ended {leftovers} process(es) the figure left running)\n");
    }
    let label = format!("figure {} ({})", figure.number, figure.name);
    match outcome {
        Ok(report) => {
            report::print_table(report.reference, report.measured, &report.rows);
            if !report.notes.is_empty() {
                println!();
            }
            for note in &report.notes {
                println!("- {note}");
            }
            let met = report.rows.iter().filter(|r| r.met()).count();
            let missed = report.rows.len() - met;
            totals.met += met;
            totals.missed += missed;
            println!("\n{label}: {met} met, {missed} missed ({seconds:.1} s)");
        }
        Err(Failure::Skipped(reason)) => {
            totals.skipped += 1;
            println!("{label}: skipped: {reason}");
        }
        Err(Failure::Failed(reason)) => {
            totals.failed += 1;
            println!("{label}: failed: {reason} ({seconds:.1} s)");
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("huptime-bench: {error}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let setup = match Setup::find(args.huptime, args.original) {
        Ok(setup) => setup,
        Err(error) => {
            eprintln!("huptime-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    servers::adopt_orphans();
    let mode = args.mode.pick("short", "full");
    println!("# huptime-bench, {mode} mode\n");
    println!("- machine: {}", machine::describe());
    println!("- load average (1 min) at the start: {}", machine::load());
    println!(
        "- huptime: {} (library {})",
        setup.huptime.display(),
        setup.library.display()
    );
    if let Some(original) = &setup.original {
        let launcher = match &original.launcher {
            Ok(launcher) => format!(
                "launcher {} run by {}",
                launcher.script.display(),
                launcher.python.display()
            ),
            Err(reason) => format!("no launcher: {reason}"),
        };
        println!(
            "- the original C huptime: library {} ({launcher}); its columns are for comparison, \
             not judged against the targets",
            original.library.display()
        );
    }
    if !setup.is_release() {
        println!("- **not a release build: these figures are a smoke test, not measurements**");
    }
    if let Some(warning) = setup.staleness() {
        println!("- **{warning}**");
    }
    println!(
        "- every figure alternates its variants round by round, each round starting one variant \
         further on (A B, B A, …), and shows their medians (min–max); the measure is the \
         median of the rounds' ratios (or differences)"
    );
    let ctx = Context {
        setup: &setup,
        mode: args.mode,
    };
    let mut totals = Totals::default();
    for figure in &args.figures {
        run_figure(figure, &ctx, &mut totals);
    }
    println!(
        "\nload average (1 min) at the end: {}\ntargets: {} met, {} missed; figures skipped: {}, failed: {}",
        machine::load(),
        totals.met,
        totals.missed,
        totals.skipped,
        totals.failed
    );
    if totals.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Option<Args>, String> {
        parse_args(words.iter().map(|word| word.to_string()))
    }

    #[test]
    fn takes_the_original_and_figures() {
        let args = parse(&["--short", "--original", "/o/bin/huptime", "3", "memory"])
            .unwrap()
            .unwrap();
        assert_eq!(args.mode, Mode::Short);
        assert_eq!(args.original, Some(PathBuf::from("/o/bin/huptime")));
        let numbers: Vec<u8> = args.figures.iter().map(|f| f.number).collect();
        assert_eq!(numbers, [3, 7]);
        assert!(parse(&[]).unwrap().unwrap().original.is_none());
    }

    #[test]
    fn refuses_a_missing_path_or_an_unknown_word() {
        let error = |words: &[&str]| parse(words).err().unwrap_or_default();
        assert_eq!(error(&["--original"]), "--original needs a path");
        assert!(error(&["--orignal", "x"]).contains("\"--orignal\""));
        assert!(parse(&["--help"]).unwrap().is_none());
    }
}
