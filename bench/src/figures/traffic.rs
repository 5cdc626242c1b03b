//! Figures 1 and 2: requests per second of nginx (one process, `return 200`, no access log)
//! and redis (`PING`), bare and under huptime, on a new connection per request (the `accept`
//! and `close` hot path) and on kept-alive connections. The servers run side by side for the
//! whole figure, on ports of their own, and the load goes to one after the other: bare,
//! huptime, a second bare copy whose ratio to the first shows the noise floor, the bare program
//! with one idle thread (the kernel's cost of a second thread, such as huptime's restart
//! thread, in a program that has none), and the original C huptime when given.

use std::path::Path;

use super::{Context, Failure, Report, beside, original_failed, original_samples};
use crate::load::{Connections, Load, Protocol};
use crate::report::{self, Row, Target, Unit};
use crate::servers::{Server, free_port};
use crate::setup::{self, Variant};
use crate::stats::{interleave_samples_beside, paired_median};

/// Client threads: enough to keep a one-process server busy on a small machine.
const CLIENTS: usize = 4;

/// Preloaded, starts one thread that sleeps for good, with every signal blocked (a thread
/// that takes none, like huptime's restart thread).
const IDLE_THREAD: &str = "\
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static void *sleep_for_good(void *unused) {
    for (;;)
        pause();
    return unused;
}

__attribute__((constructor)) static void start_idle_thread(void) {
    sigset_t all, old;
    pthread_t thread;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_create(&thread, 0, sleep_for_good, 0);
    pthread_sigmask(SIG_SETMASK, &old, 0);
}
";

pub fn short_connections(ctx: &Context<'_>) -> Result<Report, Failure> {
    run(ctx, Connections::Short, Target::RatioAtLeast(0.99))
}

pub fn keep_alive(ctx: &Context<'_>) -> Result<Report, Failure> {
    run(ctx, Connections::KeepAlive, Target::RatioAtLeast(0.995))
}

/// A server program and how to run it in `dir` on `port`.
struct App {
    case: &'static str,
    binary: &'static str,
    package: &'static str,
    protocol: Protocol,
    args: fn(&Path, u16) -> Result<Vec<String>, String>,
}

const APPS: [App; 2] = [
    App {
        case: "nginx, one process, `return 200`",
        binary: "nginx",
        package: "nginx-light",
        protocol: Protocol::Http,
        args: nginx_args,
    },
    App {
        case: "redis `PING`",
        binary: "redis-server",
        package: "redis-server",
        protocol: Protocol::RedisPing,
        args: redis_args,
    },
];

/// Writes an nginx configuration into `dir` (everything nginx writes goes there too).
fn nginx_args(dir: &Path, port: u16) -> Result<Vec<String>, String> {
    let d = dir.display();
    let config = format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         error_log {d}/error.log error;\n\
         pid {d}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   keepalive_requests 1000000000;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       location / {{ return 200 \"ok\\n\"; }}\n\
         \x20   }}\n\
         }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(vec![
        "-p".into(),
        d.to_string(),
        "-e".into(),
        format!("{d}/error.log"),
        "-c".into(),
        path.display().to_string(),
    ])
}

/// redis without persistence, its files in `dir`.
fn redis_args(dir: &Path, port: u16) -> Result<Vec<String>, String> {
    Ok([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
    ]
    .map(str::to_string)
    .to_vec())
}

fn start(
    ctx: &Context<'_>,
    app: &App,
    program: &Path,
    variant: Variant<'_>,
    label: &str,
) -> Result<Server, String> {
    let dir = ctx.setup.scratch.dir(&format!("{}-{label}", app.binary))?;
    let port = free_port()?;
    let args = (app.args)(&dir, port)?;
    let command = ctx.setup.command(variant, program, &args);
    Server::start(command, port, dir.join("stderr.log"))
}

fn run(ctx: &Context<'_>, connections: Connections, target: Target) -> Result<Report, Failure> {
    let rounds = ctx.mode.pick(3, 30);
    let window = ctx.mode.millis(300, 500);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let idle_thread = ctx
        .setup
        .scratch
        .dir("idle-thread")
        .and_then(|dir| setup::c_library(&dir, "idlethread", IDLE_THREAD))
        .map_err(|reason| notes.push(format!("no idle-thread variant: {reason}")))
        .ok();
    for app in &APPS {
        let program = match setup::program(app.binary, app.package) {
            Ok(program) => program,
            Err(reason) => {
                notes.push(format!("skipped {}: {reason}", app.binary));
                continue;
            }
        };
        let bare = start(ctx, app, &program, Variant::Bare, "bare")?;
        let huptime = start(ctx, app, &program, Variant::Huptime(&[]), "huptime")?;
        let control = start(ctx, app, &program, Variant::Bare, "control")?;
        let threaded = match &idle_thread {
            Some(library) => Some(start(
                ctx,
                app,
                &program,
                Variant::Preload(library),
                "idle",
            )?),
            None => None,
        };
        // The original, when given, if the program runs under it.
        let original = ctx.setup.original().and_then(|variant| {
            start(ctx, app, &program, variant, "original")
                .map_err(|error| notes.push(original_failed(app.binary, &error)))
                .ok()
        });
        let measure = |server: &Server| -> Result<f64, String> {
            let load = Load {
                port: server.port,
                protocol: app.protocol,
                connections,
                threads: CLIENTS,
                pace: None,
            };
            Ok(load.run_for(window).checked(app.binary)?.rate())
        };
        // Warm-up: first connections, caches, the CPU's clock.
        for server in [&bare, &huptime, &control].into_iter().chain(&threaded) {
            measure(server)?;
        }
        let original = original.filter(|server| {
            measure(server)
                .map_err(|error| notes.push(original_failed(app.binary, &error)))
                .is_ok()
        });
        let mut measure_original = original.as_ref().map(|server| move || measure(server));
        let servers = [&bare, &huptime, &control].into_iter().chain(&threaded);
        let mut runs: Vec<_> = servers.map(|server| move || measure(server)).collect();
        let mut variants: Vec<&mut dyn FnMut() -> Result<f64, String>> = runs
            .iter_mut()
            .map(|run| run as &mut dyn FnMut() -> Result<f64, String>)
            .collect();
        let (samples, original_results) =
            interleave_samples_beside(rounds, &mut variants, &mut beside(&mut measure_original))?;
        notes.push(report::control_note(app.binary, &samples[0], &samples[2]));
        if let Some(threaded) = samples.get(3) {
            let ratio = paired_median(&samples[0], threaded, |bare, threaded| threaded / bare);
            notes.push(format!(
                "{}: bare with one idle thread {ratio:.3}× bare",
                app.binary
            ));
        }
        let row = Row::ratio(app.case, Unit::PerSecond, &samples[0], &samples[1], target);
        let original_rates = original_samples(original_results, app.binary, &mut notes);
        rows.push(row.beside(&samples[0], original_rates.first()));
    }
    if rows.is_empty() {
        return Err(Failure::Skipped(notes.join("; ")));
    }
    Ok(Report {
        reference: "bare",
        measured: "huptime",
        rows,
        notes,
    })
}
