//! Runs the built `huptime` binary: bad input, lookup failures, and the control forms against
//! programs started without the preload library doing anything (a dummy file stands in for it).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A private runtime directory and a dummy library, removed on drop.
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "huptime-cli-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("run")).unwrap();
        fs::write(dir.join("libdummy.so"), "").unwrap();
        fs::write(dir.join("libhuptime_engine.so"), "").unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn huptime(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_huptime"));
        command
            .args(args)
            .env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .env("HUPTIME_LIB", self.dir.join("libdummy.so"))
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.huptime(args).output().unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.huptime(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Waits until `--status WORDS` finds an instance.
    fn wait_for_instance(&self, words: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let output = self.run(&[&["--status", "--"], words].concat());
            if output.status.success() {
                return String::from_utf8_lossy(&output.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no instance of {words:?} appeared"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_status(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr: {}",
        stderr(output)
    );
}

#[test]
fn bad_input_is_a_usage_error() {
    let sandbox = Sandbox::new();
    for args in [
        &["--bogus", "true"][..],
        &[],
        &["--debug"],
        &["--multi=0", "true"],
        &["--multi=x", "true"],
        &["--timeout=-1", "--stop", "true"],
        &["--signal=KILL", "true"],
        &["--signal=STOP", "true"],
        &["--signal=0", "true"],
        &["--signal=BOGUS", "true"],
        &["--signal=99", "true"],
        &["--fork", "--exec", "true"],
        &["--restart"],
    ] {
        let output = sandbox.run(args);
        assert_status(&output, 2);
        assert!(stderr(&output).contains("--help"), "{args:?}");
    }
}

#[test]
fn version() {
    let output = Sandbox::new().run(&["--version"]);
    assert_status(&output, 0);
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("huptime "));
}

#[test]
fn missing_command_is_127() {
    let output = Sandbox::new().run(&["huptime-no-such-command-here"]);
    assert_status(&output, 127);
    assert!(stderr(&output).contains("huptime-no-such-command-here: command not found"));
}

#[test]
fn non_executable_file_is_126() {
    let sandbox = Sandbox::new();
    let file = sandbox.path().join("data");
    fs::write(&file, "not a program").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let output = sandbox.run(&[file.to_str().unwrap()]);
    assert_status(&output, 126);
    assert!(stderr(&output).contains("Permission denied"));
}

#[test]
fn missing_library_names_where_it_looked() {
    let output = Sandbox::new()
        .huptime(&["true"])
        .env("HUPTIME_LIB", "/nonexistent/libhuptime.so")
        .output()
        .unwrap();
    assert_status(&output, 1);
    assert!(
        stderr(&output)
            .contains("cannot find libhuptime.so with libhuptime_engine.so beside it (looked in: /nonexistent/libhuptime.so)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn status_without_instances_is_3() {
    let sandbox = Sandbox::new();
    assert_status(&sandbox.run(&["--status"]), 3);
    let output = sandbox.run(&["--restart", "server"]);
    assert_status(&output, 3);
    assert!(stderr(&output).contains("no running instance of server"));
}

#[test]
fn program_is_execed_with_the_huptime_environment() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .huptime(&[
            "--",
            "/bin/sh",
            "-c",
            "echo \"$HUPTIME_OPTIONS\"; echo \"$LD_PRELOAD\"; echo \"$HUPTIME_STATE\"; \
             echo \"pid $$\"; exit 7",
        ])
        .env("LD_PRELOAD", "")
        .output()
        .unwrap();
    assert_status(&output, 7);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("v1;mode=fork;signal=1;"),
        "{}",
        lines[0]
    );
    let library = fs::canonicalize(sandbox.path().join("libdummy.so")).unwrap();
    assert_eq!(lines[1], library.to_str().unwrap());
    // The state names the exec'd program's own PID: no fork in between.
    let pid = lines[3].strip_prefix("pid ").unwrap();
    assert!(
        lines[2].starts_with(&format!("huptime/1;gen=0;pid={pid};instance={pid}-")),
        "{}",
        lines[2]
    );
}

#[test]
fn status_and_stop_find_a_running_instance() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn(&["sleep", "30"]);
    let status = sandbox.wait_for_instance(&["sleep", "30"]);
    assert!(status.contains(&format!("PID: {}", child.id())), "{status}");
    assert_status(&sandbox.run(&["--status", "30"]), 0);
    // Never a prefix match.
    assert_status(&sandbox.run(&["--status", "sleep"]), 3);

    let output = sandbox.run(&["--stop", "sleep", "30"]);
    assert_status(&output, 0);
    assert!(String::from_utf8_lossy(&output.stdout).contains("stopped sleep 30"));
    assert!(child.wait().unwrap().code().is_none(), "killed by SIGTERM");
    assert_status(&sandbox.run(&["--status"]), 3);
}

#[test]
fn restart_reports_a_program_that_dies_of_the_signal() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn(&["sleep", "31"]);
    sandbox.wait_for_instance(&["sleep", "31"]);
    // Without a working preload library, SIGHUP simply kills sleep.
    let output = sandbox.run(&["--restart", "sleep", "31"]);
    assert_status(&output, 1);
    assert!(
        stderr(&output).contains("restart of sleep 31 failed"),
        "{}",
        stderr(&output)
    );
    child.wait().unwrap();
}

#[test]
fn multi_stops_its_copies_on_sigterm() {
    let sandbox = Sandbox::new();
    let mut launcher = sandbox.spawn(&["--multi=2", "sleep", "32"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sandbox
        .wait_for_instance(&["sleep", "32"])
        .matches("PID:")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "two copies did not appear");
        thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(launcher.id() as i32, libc::SIGTERM) };
    assert_eq!(launcher.wait().unwrap().code(), Some(0));
    assert_status(&sandbox.run(&["--status"]), 3);
}

/// build.rs links the launcher as a static PIE when glibc's static archives are there, by
/// making each library rustc names resolve to its archive. A library that slipped through as
/// a shared one would be recorded as needed in a binary that has no loader to load it.
#[test]
fn a_static_launcher_needs_no_shared_library() {
    let output = Command::new("readelf")
        .args(["--wide", "--program-headers", "--dynamic"])
        .arg(env!("CARGO_BIN_EXE_huptime"))
        .output()
        .expect("readelf (Debian: binutils) reads the launcher's headers");
    assert!(output.status.success(), "{output:?}");
    let headers = String::from_utf8_lossy(&output.stdout);
    if !headers.contains("INTERP") {
        assert!(!headers.contains("(NEEDED)"), "{headers}");
    }
}
