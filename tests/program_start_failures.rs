//! Real programs that exit at start-up exit exactly as without huptime: the same exit status,
//! the same stdout and the same stderr, byte for byte, so huptime adds nothing to their output
//! and changes nothing in what they see. The failures are the usual ones: a bad argument, a
//! missing script or config file, and a port that another process already listens on (so the
//! program's own `bind()`/`listen()` fails, and it must see the same error as without huptime).
//!
//! nginx stamps its messages with the time and its pid, which differ between any two runs: for
//! nginx, those two fields alone are masked before the comparison. Each case is run bare first,
//! then under huptime, with the same arguments, in the same directory. A program that is not
//! installed fails its test, with the package to install (`.ci/run` installs them all). Needs
//! `cargo build --workspace`.

use std::ffi::OsString;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use huptime_tests::Sandbox;
use huptime_tests::control::{Controller, Outcome, run_bounded};
use huptime_tests::installed::installed;

/// How long one run of a failing program may take (nginx retries a busy port for 2.5 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// A listener on a free loopback port, held for the whole test so that the program cannot
/// bind that port.
fn busy_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a busy port");
    let port = listener.local_addr().expect("its address").port();
    (listener, port)
}

/// Runs `program args` bare and under huptime, in the sandbox directory, and checks that both
/// runs failed the same way. `mask` rewrites the parts of the output that differ between any two
/// runs of the program.
fn same_failure(
    sandbox: &Sandbox,
    program: &Path,
    args: &[OsString],
    mask: fn(&str) -> String,
) -> Outcome {
    let dir = sandbox.file("");
    let mut bare = sandbox.command(program);
    bare.args(args).current_dir(&dir);
    let bare = run_bounded(sandbox, bare, RUN_TIMEOUT);

    let control = Controller::new(sandbox);
    let mut under = control.huptime();
    under.arg("--").arg(program).args(args).current_dir(&dir);
    let under = run_bounded(sandbox, under, RUN_TIMEOUT);

    eprintln!("bare: {bare:#?}\nunder huptime: {under:#?}");
    assert!(
        bare.code.is_some_and(|code| code != 0),
        "{} {args:?} should fail at start-up: {bare:#?}",
        program.display()
    );
    assert_eq!(under.code, bare.code, "exit status under huptime");
    assert_eq!(under.stdout, bare.stdout, "stdout under huptime");
    assert_eq!(
        mask(&under.stderr),
        mask(&bare.stderr),
        "stderr under huptime"
    );
    bare
}

fn unmasked(text: &str) -> String {
    text.to_owned()
}

/// nginx's `2026/01/02 03:04:05 [emerg] 123#123: ...`: the time and the pid#tid masked.
fn mask_nginx(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        let stamped = fields.len() == 5
            && fields[0].len() == 10
            && fields[0].matches('/').count() == 2
            && fields[1].len() == 8
            && fields[1].matches(':').count() == 2
            && fields[2].starts_with('[')
            && fields[3].ends_with(':')
            && fields[3].contains('#');
        if stamped {
            out.push_str(&format!("DATE TIME {} PID#TID: {}", fields[2], fields[4]));
        } else {
            out.push_str(line);
        }
    }
    out
}

fn args(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|item| item.as_ref().to_owned()).collect()
}

#[test]
fn python_http_server_with_a_bad_port() {
    let sandbox = Sandbox::new("start-failure-python-bad-port");
    let python = installed("python3", "python3");
    let outcome = same_failure(
        &sandbox,
        &python,
        &args(&[&"-m", &"http.server", &"notaport"]),
        unmasked,
    );
    assert_eq!(outcome.code, Some(2), "argparse's usage error");
}

#[test]
fn python_http_server_on_a_busy_port() {
    let sandbox = Sandbox::new("start-failure-python-busy-port");
    let python = installed("python3", "python3");
    let (_listener, port) = busy_port();
    let outcome = same_failure(
        &sandbox,
        &python,
        &args(&[
            &"-m",
            &"http.server",
            &port.to_string(),
            &"--bind",
            &"127.0.0.1",
        ]),
        unmasked,
    );
    assert!(
        outcome.stderr.contains("Address already in use"),
        "{outcome:#?}"
    );
}

#[test]
fn node_with_a_missing_script() {
    let sandbox = Sandbox::new("start-failure-node-missing");
    let node = installed("node", "nodejs");
    same_failure(
        &sandbox,
        &node,
        &args(&[&sandbox.file("missing.js")]),
        unmasked,
    );
}

#[test]
fn node_on_a_busy_port() {
    let sandbox = Sandbox::new("start-failure-node-busy-port");
    let node = installed("node", "nodejs");
    let version_file = sandbox.file("version");
    fs::write(&version_file, "v1\n").expect("write the version file");
    let (_listener, port) = busy_port();
    let outcome = same_failure(
        &sandbox,
        &node,
        &args(&[
            &programs_dir().join("server.js"),
            &port.to_string(),
            &version_file,
        ]),
        unmasked,
    );
    assert!(outcome.stderr.contains("EADDRINUSE"), "{outcome:#?}");
}

#[test]
fn nginx_with_a_missing_config() {
    let sandbox = Sandbox::new("start-failure-nginx-missing");
    let nginx = installed("nginx", "nginx-light");
    same_failure(
        &sandbox,
        &nginx,
        &args(&[
            &"-p",
            &sandbox.file(""),
            &"-e",
            &"stderr",
            &"-c",
            &sandbox.file("missing.conf"),
        ]),
        mask_nginx,
    );
}

#[test]
fn nginx_on_a_busy_port() {
    let sandbox = Sandbox::new("start-failure-nginx-busy-port");
    let nginx = installed("nginx", "nginx-light");
    let (_listener, port) = busy_port();
    let dir = sandbox.file("");
    let d = dir.display();
    let config = sandbox.file("nginx.conf");
    fs::write(
        &config,
        format!(
            "daemon off;\nmaster_process off;\nerror_log stderr;\npid {d}/nginx.pid;\n\
             events {{ }}\nhttp {{ access_log off; client_body_temp_path {d}/body; \
             proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi; \
             uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; \
             server {{ listen 127.0.0.1:{port}; return 200 \"hello\\n\"; }} }}\n"
        ),
    )
    .expect("write the config");
    let outcome = same_failure(
        &sandbox,
        &nginx,
        &args(&[&"-p", &dir, &"-e", &"stderr", &"-c", &config]),
        mask_nginx,
    );
    assert!(
        outcome.stderr.contains("Address already in use"),
        "{outcome:#?}"
    );
}

#[test]
fn redis_with_a_bad_port() {
    let sandbox = Sandbox::new("start-failure-redis-bad-port");
    let redis = installed("redis-server", "redis-server");
    same_failure(
        &sandbox,
        &redis,
        &args(&[
            &"--port",
            &"notaport",
            &"--save",
            &"",
            &"--dir",
            &sandbox.file(""),
        ]),
        unmasked,
    );
}

#[test]
fn memcached_with_a_bad_option() {
    let sandbox = Sandbox::new("start-failure-memcached-bad-option");
    let memcached = installed("memcached", "memcached");
    same_failure(
        &sandbox,
        &memcached,
        &args(&[&"--no-such-option"]),
        unmasked,
    );
}

#[test]
fn memcached_on_a_busy_port() {
    let sandbox = Sandbox::new("start-failure-memcached-busy-port");
    let memcached = installed("memcached", "memcached");
    let (_listener, port) = busy_port();
    let outcome = same_failure(
        &sandbox,
        &memcached,
        &args(&[
            &"-p",
            &port.to_string(),
            &"-l",
            &"127.0.0.1",
            &"-U",
            &"0",
            &"-u",
            &"root",
        ]),
        unmasked,
    );
    assert!(
        outcome.stderr.contains("Address already in use"),
        "{outcome:#?}"
    );
}

#[test]
fn java_with_a_missing_source_file() {
    let sandbox = Sandbox::new("start-failure-java-missing");
    let java = installed("java", "default-jdk-headless");
    same_failure(
        &sandbox,
        &java,
        &args(&[&sandbox.file("Missing.java"), &"1", &"version"]),
        unmasked,
    );
}

#[test]
fn gunicorn_with_a_bad_option_value() {
    let sandbox = Sandbox::new("start-failure-gunicorn-bad-workers");
    let gunicorn = installed("gunicorn", "gunicorn");
    let outcome = same_failure(
        &sandbox,
        &gunicorn,
        &args(&[&"--workers", &"notanumber", &"app:application"]),
        unmasked,
    );
    assert_eq!(outcome.code, Some(2), "argparse's usage error");
}

#[test]
fn nginx_stamps_are_masked_and_nothing_else() {
    let text = "2026/11/29 01:25:38 [emerg] 21958#21958: open() \"/x\" failed\nplain line\n";
    assert_eq!(
        mask_nginx(text),
        "DATE TIME [emerg] PID#TID: open() \"/x\" failed\nplain line\n"
    );
}
