//! `compat-table`: rewrites the compatibility table in the workspace's README.md from the
//! results of the newest run of the `programs` tests (see `huptime_tests::compat`), between the
//! `<!-- compat:begin -->` and `<!-- compat:end -->` markers, and prints it. The README states the
//! command that runs the tests and then this.
//!
//! Exits 1, leaving the README untouched, when there are no results or the markers are missing.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use huptime_tests::compat::{newest_run, render_table, replace_section, results_path};

fn main() -> ExitCode {
    match regenerate() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compat-table: {e}");
            ExitCode::FAILURE
        }
    }
}

fn regenerate() -> Result<(), String> {
    let results = results_path();
    let text = fs::read_to_string(&results).map_err(|e| {
        format!(
            "cannot read {} ({e}): run `cargo test -p huptime-tests --test programs` first",
            results.display()
        )
    })?;
    let rows = newest_run(&text).map_err(|e| format!("{}: {e}", results.display()))?;
    let table = render_table(&rows);
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme_path = manifest_dir
        .parent()
        .unwrap_or(manifest_dir)
        .join("README.md");
    let readme = fs::read_to_string(&readme_path)
        .map_err(|e| format!("cannot read {}: {e}", readme_path.display()))?;
    let updated = replace_section(&readme, &table)?;
    if updated != readme {
        fs::write(&readme_path, updated)
            .map_err(|e| format!("cannot write {}: {e}", readme_path.display()))?;
    }
    print!("{table}");
    eprintln!(
        "compat-table: {} rows from {} written to {}",
        rows.len(),
        results.display(),
        readme_path.display()
    );
    Ok(())
}
