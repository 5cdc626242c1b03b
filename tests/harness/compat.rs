//! The compatibility table: what the real-program tests measured, written down by the tests
//! themselves and turned into the README's table by the `compat-table` binary, never by hand.
//!
//! Every passing program test appends one JSON line to the results file (the path in
//! `HUPTIME_COMPAT_RESULTS`, by default `compat-results.jsonl` in cargo's target directory).
//! Each line names the test run it belongs to (the process that ran the tests: `cargo test`, or
//! `cargo nextest`), so results of older runs that linger in the file are told apart; the table is
//! made from the newest run's lines. The README section sits between [`BEGIN_MARKER`] and
//! [`END_MARKER`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;

use crate::binaries::target_dir;

/// The environment variable that overrides where results go.
pub const RESULTS_ENV: &str = "HUPTIME_COMPAT_RESULTS";
pub const BEGIN_MARKER: &str = "<!-- compat:begin -->";
pub const END_MARKER: &str = "<!-- compat:end -->";

/// One program in one mode, as one test measured it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompatResult {
    /// The test run the result belongs to (see the module doc).
    pub run: String,
    /// The program and how it ran: `nginx: daemon, master + 2 workers`.
    pub program: String,
    /// The program's version that ran: `nginx 1.22.1`.
    pub version: String,
    /// `fork` or `exec`.
    pub mode: String,
    /// huptime restarts done, each under load and each reaching the new version.
    pub restarts: u64,
    /// The program's own reloads (SIGHUP) done under load, with `--signal` set to another signal.
    pub own_reloads: u64,
    /// Requests the load got complete, correct replies to.
    pub requests: u64,
    /// Requests that failed in any way.
    pub failures: u64,
    /// Seconds the test ran under load.
    pub seconds: u64,
}

/// Where results are written and read.
pub fn results_path() -> PathBuf {
    match std::env::var_os(RESULTS_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => target_dir().join("compat-results.jsonl"),
    }
}

/// This test run: the parent process (the test runner) and its start time, so a recycled pid is
/// another run.
pub fn this_run() -> String {
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() };
    let started = fs::read_to_string(format!("/proc/{parent}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            // Field 22 (starttime) is the 20th after the command name.
            rest.split_whitespace().nth(19).map(str::to_owned)
        })
        .unwrap_or_default();
    format!("{parent}-{started}")
}

/// Appends `result` to the results file, in one write (tests record in parallel).
///
/// # Panics
/// If the file cannot be written.
pub fn record(result: &CompatResult) {
    let path = results_path();
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    let line = format!("{}\n", to_json(result));
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
    eprintln!(
        "compat result recorded in {}: {}",
        path.display(),
        line.trim()
    );
}

fn to_json(result: &CompatResult) -> String {
    format!(
        "{{\"run\":{},\"program\":{},\"version\":{},\"mode\":{},\"restarts\":{},\"own_reloads\":{},\
         \"requests\":{},\"failures\":{},\"seconds\":{}}}",
        json_string(&result.run),
        json_string(&result.program),
        json_string(&result.version),
        json_string(&result.mode),
        result.restarts,
        result.own_reloads,
        result.requests,
        result.failures,
        result.seconds
    )
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON value of the flat objects this module writes.
#[derive(Debug, PartialEq)]
enum Value {
    Text(String),
    Number(u64),
}

/// Parses one line written by [`record`]: a flat object of strings and whole numbers.
pub fn parse_line(line: &str) -> Result<CompatResult, String> {
    let mut fields = BTreeMap::new();
    let mut rest = line
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or("not a JSON object")?
        .trim_start();
    while !rest.is_empty() {
        let (key, after) = parse_string(rest)?;
        rest = after
            .trim_start()
            .strip_prefix(':')
            .ok_or("no ':' after a key")?
            .trim_start();
        let value;
        if rest.starts_with('"') {
            let (text, after) = parse_string(rest)?;
            value = Value::Text(text);
            rest = after;
        } else {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let number = rest[..end]
                .parse()
                .map_err(|_| format!("bad value of {key:?}"))?;
            value = Value::Number(number);
            rest = &rest[end..];
        }
        fields.insert(key, value);
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return Err("no ',' between fields".to_owned());
        }
    }
    let text = |key: &str| match fields.get(key) {
        Some(Value::Text(text)) => Ok(text.clone()),
        _ => Err(format!("no text field {key:?}")),
    };
    let number = |key: &str| match fields.get(key) {
        Some(Value::Number(n)) => Ok(*n),
        _ => Err(format!("no number field {key:?}")),
    };
    Ok(CompatResult {
        run: text("run")?,
        program: text("program")?,
        version: text("version")?,
        mode: text("mode")?,
        restarts: number("restarts")?,
        own_reloads: number("own_reloads")?,
        requests: number("requests")?,
        failures: number("failures")?,
        seconds: number("seconds")?,
    })
}

/// A JSON string at the start of `input`, and what follows it.
fn parse_string(input: &str) -> Result<(String, &str), String> {
    let mut chars = input
        .strip_prefix('"')
        .ok_or("expected a string")?
        .char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &input[1 + i + 1..])),
            '\\' => match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'u')) => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    let code = u32::from_str_radix(&hex, 16).map_err(|_| "bad \\u escape")?;
                    out.push(char::from_u32(code).ok_or("bad \\u escape")?);
                }
                _ => return Err("unknown escape".to_owned()),
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".to_owned())
}

/// The results of the newest run in `text` (the run of its last line), one per program and
/// mode (the last one, should a run have recorded one twice), sorted by program, fork first.
pub fn newest_run(text: &str) -> Result<Vec<CompatResult>, String> {
    let results = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| parse_line(line).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(last) = results.last() else {
        return Err("no results".to_owned());
    };
    let run = last.run.clone();
    let mut rows = BTreeMap::new();
    for result in results.into_iter().filter(|r| r.run == run) {
        let mode_rank = if result.mode == "fork" { 0 } else { 1 };
        rows.insert(
            (result.program.clone(), mode_rank, result.mode.clone()),
            result,
        );
    }
    Ok(rows.into_values().collect())
}

/// The Markdown table of `results`.
pub fn render_table(results: &[CompatResult]) -> String {
    let mut out = String::from(
        "| program | version | mode | restarts under load | own SIGHUP reloads | requests served | failed requests |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.program.replace('|', "\\|"),
            r.version.replace('|', "\\|"),
            r.mode,
            r.restarts,
            if r.own_reloads == 0 {
                "–".to_owned()
            } else {
                r.own_reloads.to_string()
            },
            r.requests,
            r.failures
        );
    }
    out
}

/// `readme` with the text between the markers replaced by `table`.
pub fn replace_section(readme: &str, table: &str) -> Result<String, String> {
    let begin = readme
        .find(BEGIN_MARKER)
        .ok_or_else(|| format!("no {BEGIN_MARKER} in the README"))?;
    let content_start = begin + BEGIN_MARKER.len();
    let end = readme[content_start..]
        .find(END_MARKER)
        .map(|offset| content_start + offset)
        .ok_or_else(|| format!("no {END_MARKER} after {BEGIN_MARKER} in the README"))?;
    Ok(format!(
        "{}\n{}{}",
        &readme[..content_start],
        table,
        &readme[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(run: &str, program: &str, mode: &str, requests: u64) -> CompatResult {
        CompatResult {
            run: run.to_owned(),
            program: program.to_owned(),
            version: "1.2.3".to_owned(),
            mode: mode.to_owned(),
            restarts: 20,
            own_reloads: 0,
            requests,
            failures: 0,
            seconds: 12,
        }
    }

    #[test]
    fn lines_round_trip() {
        let original = result("1-2", "nginx 1.22 \"quoted\" \\ | pipe", "exec", 5);
        assert_eq!(parse_line(&to_json(&original)), Ok(original));
        assert!(parse_line("{\"run\":\"1\"}").is_err());
        assert!(parse_line("not json").is_err());
    }

    #[test]
    fn newest_run_wins() {
        let lines: Vec<String> = [
            result("old", "redis", "fork", 1),
            result("new", "redis", "exec", 2),
            result("new", "memcached", "exec", 3),
            result("new", "redis", "fork", 4),
        ]
        .iter()
        .map(to_json)
        .collect();
        let rows = newest_run(&lines.join("\n")).unwrap();
        let keys: Vec<(&str, &str, u64)> = rows
            .iter()
            .map(|r| (r.program.as_str(), r.mode.as_str(), r.requests))
            .collect();
        assert_eq!(
            keys,
            [
                ("memcached", "exec", 3),
                ("redis", "fork", 4),
                ("redis", "exec", 2)
            ]
        );
        assert!(newest_run("").is_err());
    }

    #[test]
    fn section_is_replaced_between_markers() {
        let readme = format!("a\n{BEGIN_MARKER}\nold\n{END_MARKER}\nb\n");
        let table = render_table(&[result("r", "x|y", "fork", 7)]);
        let new = replace_section(&readme, &table).unwrap();
        assert_eq!(new, format!("a\n{BEGIN_MARKER}\n{table}{END_MARKER}\nb\n"));
        assert!(new.contains("| x\\|y | 1.2.3 | fork | 20 | – | 7 | 0 |"));
        assert!(replace_section("no markers", &table).is_err());
    }
}
