//! The bench in short mode, end to end: it must run and print the closing line of every figure
//! (measured, or skipped with the reason why). Its figures are printed, never asserted: this
//! only keeps the bench from rotting. It measures the huptime built beside it (`cargo build
//! --workspace` first).

use std::process::Command;

#[test]
fn short_mode_reports_every_figure() {
    let output = Command::new(env!("CARGO_BIN_EXE_huptime-bench"))
        .arg("--short")
        .output()
        .expect("cannot run huptime-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "huptime-bench --short failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for number in 1..=8 {
        let prefix = format!("figure {number} (");
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no closing line for figure {number}:\n{stdout}"));
        assert!(
            line.contains(" met, ") || line.contains(": skipped: "),
            "figure {number} neither measured nor skipped: {line}"
        );
    }
}
