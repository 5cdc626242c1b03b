//! Real programs, unmodified, restarted under huptime while clients keep hammering them:
//! `python3 -m http.server`, node, nginx (three ways), redis-server, memcached, java and
//! gunicorn, each in fork mode and in exec mode.
//!
//! Each test starts the program under huptime on a free loopback port, in its sandbox, with a
//! generated configuration and a runtime directory of its own. Several clients keep sending
//! requests (one short connection each: connect, request, whole reply, close) while
//! `huptime --restart` restarts the program 20 times, back to back. The test shows:
//! - every restart succeeds (`--restart` exits 0), makes the next generation (generation N+1;
//!   in fork mode a new process, in exec mode the same one, unless the program daemonizes and so
//!   forks away again) and reaches the new version, which the load then sees too;
//! - not one request fails in any way (refused, reset, timed out, empty, short or wrong reply);
//! - afterwards no process of an old generation is left: every process the test started is the
//!   current master or descends from it, and every process that answered for an old version, and
//!   every old master, is gone.
//!
//! What "the new version" is, per program (the program must have started again to serve it):
//! - `python3 -m http.server` serves the files of the directory it started in. Each release is a
//!   directory holding a `version` file; the server runs in `current`, a symlink that a deploy
//!   flips to the next release, and is asked for `/version`. A restart re-enters `current` by its
//!   path and so serves the new release; the old generation keeps serving the old one.
//! - node (`server.js`), java (`Server.java`) and gunicorn (`app.py`, imported by each worker):
//!   a version file read at start-up; replies say `version=<v> pid=<pid>`.
//! - nginx: `return 200 "version=<v> pid=$pid\n"` in the generated config, which nginx reads at
//!   start-up: a deploy rewrites the config.
//! - redis: `run_id` from `INFO server`, which every start draws anew: the new version is one
//!   never seen before.
//! - memcached: its cache starts empty. The test labels each generation by `add`ing a key with
//!   its version; right after a restart the key must be missing (the new generation answers),
//!   then it is added (so `add` must succeed) and read back. Replies from a generation not yet
//!   labelled carry the version `""` and count as served requests.
//!
//! nginx and gunicorn use SIGHUP themselves (nginx re-reads its config, gunicorn replaces its
//! workers), so they run with `--signal=USR2` and `--signal=RTMIN+3`, and halfway through their
//! restarts the test checks that their own SIGHUP still does what it did, under the same load:
//! the new config or code is served (by new workers, and the old workers go away), while
//! `huptime --status` shows the same master and generation and no new restart. (nginx with
//! `master_process off` does not apply a new config on SIGHUP even without huptime, so there is
//! nothing of its own to keep; it is restarted like the others.)
//!
//! With `HUPTIME_TEST_DEBUG=1` in the environment, the programs run with `huptime --debug`.
//!
//! Every passing test records its counts for the README's compatibility table (see
//! `huptime_tests::compat` and the `compat-table` binary). A program that is not installed fails
//! its tests, with the package to install: `.ci/run` installs them all. Needs
//! `cargo build --workspace` first.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use huptime_tests::compat::{self, CompatResult};
use huptime_tests::control::Controller;
use huptime_tests::installed::{installed, reported_version};
use huptime_tests::{
    Endpoint, Load, Mode, Protocol, Reply, SIGHUP, Sandbox, free_port, memcached_add, send_signal,
    wait_gone, wait_until,
};

/// huptime restarts per test.
const RESTARTS: usize = 20;
/// Load clients hammering the program throughout.
const LOAD_CLIENTS: usize = 4;
/// The program's own reload (where it has one) comes after this many restarts, so restarts are
/// checked both before and after it.
const OWN_RELOAD_AFTER: usize = RESTARTS / 2;
/// How long the load may take to get its first reply from a version that already serves.
const SERVED_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the program's own reload may take to serve the new config or code.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a started program's instance may take to show in `huptime --status`.
const INSTANCE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long old processes may take to finish their connections and exit.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Set (to anything) to run the programs with `huptime --debug`: its decisions go to the
/// program's stderr log, which a failing test prints.
const DEBUG_ENV: &str = "HUPTIME_TEST_DEBUG";
/// The memcached key that labels a generation with its version.
const MEMCACHED_KEY: &str = "huptime-version";

fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// How the version of a new generation is known.
enum Versioning {
    /// `deploy(version)` makes the next start serve exactly `version`.
    Chosen,
    /// Every start draws a version of its own: a new generation serves one never seen before.
    Drawn,
    /// A new generation serves `""` (a fresh cache) until the test labels it with
    /// [`memcached_add`].
    Labelled,
}

/// A real program set up in a sandbox, ready to run under huptime.
struct Program {
    /// What runs, for the table: `nginx, master + 2 workers, daemon off`.
    name: String,
    /// The product and version that runs: `nginx 1.22.1`.
    version: String,
    /// The command line, as huptime runs it and as `huptime --restart` is given it; the program
    /// by its absolute path (nginx lives in `sbin`, which `PATH` may lack).
    words: Vec<OsString>,
    env: Vec<(&'static str, OsString)>,
    /// The working directory, entered through a symlink (and so also given as `PWD`).
    cwd: Option<PathBuf>,
    /// `--signal=...` for programs that use SIGHUP themselves.
    signal: Option<&'static str>,
    protocol: Protocol,
    versioning: Versioning,
    /// Makes the next start (or own reload) serve the version given.
    deploy: Box<dyn Fn(&str)>,
    /// SIGHUP makes the program reload by itself: check it still does.
    own_reload: bool,
    /// The master daemonizes at every start: even in exec mode, the master of a new generation
    /// is a new process (the re-executed program forks away again).
    daemonizes: bool,
}

impl Program {
    /// `name` (the product `version`) run as `words`, with the common settings: it serves HTTP
    /// at `/`, each start the version `deploy` chose, and needs nothing else. The programs that
    /// differ override these fields.
    fn new(
        name: &str,
        version: String,
        words: Vec<OsString>,
        deploy: Box<dyn Fn(&str)>,
    ) -> Program {
        Program {
            name: name.into(),
            version,
            words,
            env: Vec::new(),
            cwd: None,
            signal: None,
            protocol: Protocol::http("/"),
            versioning: Versioning::Chosen,
            deploy,
            own_reload: false,
            daemonizes: false,
        }
    }
}

fn words(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|item| item.as_ref().to_owned()).collect()
}

/// Writes `text` to `path` through a rename, so a reader sees the old or the new content whole.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), path.display()));
}

/// `python3 -m http.server`, run in `current` (a symlink to the release directory), serving
/// `current/version`.
fn python_http_server(sandbox: &Sandbox, port: u16) -> Program {
    let python = installed("python3", "python3");
    let releases = sandbox.file("releases");
    let current = sandbox.file("current");
    let deploy = move |version: &str| {
        let release = releases.join(version);
        fs::create_dir_all(&release)
            .unwrap_or_else(|e| panic!("create {}: {e}", release.display()));
        fs::write(release.join("version"), format!("version={version}\n"))
            .expect("write the release's version file");
        // Flip the link atomically, as a deploy does: a new link renamed over the old one.
        let new_link = current.with_extension("new");
        let _ = fs::remove_file(&new_link);
        symlink(&release, &new_link).expect("create the new current link");
        fs::rename(&new_link, &current).expect("flip the current link");
    };
    Program {
        cwd: Some(sandbox.file("current")),
        protocol: Protocol::http("/version"),
        ..Program::new(
            "python3 -m http.server",
            format!("Python {}", reported_version(&python, &["--version"])),
            words(&[
                &python,
                &"-m",
                &"http.server",
                &port.to_string(),
                &"--bind",
                &"127.0.0.1",
            ]),
            Box::new(deploy),
        )
    }
}

/// Writes the version file that the node, java and gunicorn servers read at start-up.
fn version_file_deploy(path: PathBuf) -> Box<dyn Fn(&str)> {
    Box::new(move |version: &str| write_atomically(&path, &format!("{version}\n")))
}

/// `node server.js PORT VERSION_FILE`.
fn node(sandbox: &Sandbox, port: u16) -> Program {
    let node = installed("node", "nodejs");
    let version_file = sandbox.file("version");
    Program::new(
        "node server.js (http module)",
        format!("Node.js {}", reported_version(&node, &["--version"])),
        words(&[
            &node,
            &programs_dir().join("server.js"),
            &port.to_string(),
            &version_file,
        ]),
        version_file_deploy(version_file),
    )
}

/// `java Server.java PORT VERSION_FILE`: the JDK's source launcher, compiling at every start.
fn java(sandbox: &Sandbox, port: u16) -> Program {
    let java = installed("java", "default-jdk-headless");
    let version_file = sandbox.file("version");
    Program::new(
        "java Server.java (com.sun.net.httpserver)",
        format!("Java {}", reported_version(&java, &["-version"])),
        // Flags for a small service on a small machine (one JIT tier, the serial collector):
        // they halve the JVM's start-up, which every restart waits for.
        words(&[
            &java,
            &"-XX:TieredStopAtLevel=1",
            &"-XX:+UseSerialGC",
            &programs_dir().join("Server.java"),
            &port.to_string(),
            &version_file,
        ]),
        version_file_deploy(version_file),
    )
}

/// `gunicorn -w 2` with the WSGI app in `programs/app.py`; its workers read the version file
/// when they boot.
fn gunicorn(sandbox: &Sandbox, port: u16) -> Program {
    let gunicorn = installed("gunicorn", "gunicorn");
    let version_file = sandbox.file("version");
    Program {
        env: vec![("HUPTIME_TEST_VERSION_FILE", version_file.clone().into())],
        signal: Some("--signal=RTMIN+3"),
        own_reload: true,
        ..Program::new(
            "gunicorn, 2 sync workers",
            format!("gunicorn {}", reported_version(&gunicorn, &["--version"])),
            words(&[
                &gunicorn,
                &"--pythonpath",
                &programs_dir(),
                &"--workers",
                &"2",
                &"--bind",
                &format!("127.0.0.1:{port}"),
                &"app:application",
            ]),
            version_file_deploy(version_file),
        )
    }
}

/// The ways nginx runs in the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NginxStyle {
    /// `daemon off; master_process off;`: one process.
    SingleProcess,
    /// `daemon off;`, a master and 2 workers.
    Workers,
    /// The default: a daemonizing master and 2 workers.
    Daemon,
}

/// The generated `nginx.conf`: everything nginx writes goes into `dir`, so it runs as root
/// without touching `/var`; the reply names the version and the process that answered.
fn nginx_config(
    dir: &Path,
    error_log: &Path,
    port: u16,
    style: NginxStyle,
    version: &str,
) -> String {
    let d = dir.display();
    let error_log = error_log.display();
    let top = match style {
        NginxStyle::SingleProcess => "daemon off;\nmaster_process off;\n",
        NginxStyle::Workers => "daemon off;\nworker_processes 2;\n",
        NginxStyle::Daemon => "worker_processes 2;\n",
    };
    format!(
        "# Generated by the huptime program tests.\n\
         {top}\
         error_log {error_log} notice;\n\
         pid {d}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       location / {{ return 200 \"version={version} pid=$pid\\n\"; }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// `nginx -p DIR -e DIR/nginx-error.log -c DIR/nginx.conf`, with `--signal=USR2`.
fn nginx(sandbox: &Sandbox, port: u16, style: NginxStyle) -> Program {
    let nginx = installed("nginx", "nginx-light");
    let dir = sandbox.file("nginx");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let config = dir.join("nginx.conf");
    // In the sandbox's top directory, whose logs a failing test prints.
    let error_log = sandbox.file("nginx-error.log");
    let name = match style {
        NginxStyle::SingleProcess => "nginx, master_process off",
        NginxStyle::Workers => "nginx, master + 2 workers, daemon off",
        NginxStyle::Daemon => "nginx, daemonizing master + 2 workers",
    };
    let config_path = config.clone();
    let error_log_path = error_log.clone();
    let deploy = move |version: &str| {
        let text = nginx_config(&dir, &error_log_path, port, style, version);
        write_atomically(&config_path, &text);
    };
    Program {
        signal: Some("--signal=USR2"),
        // With `master_process off`, SIGHUP does not make nginx serve the new config even
        // without huptime (it logs "reconfiguring" and goes on with the old one, and loses
        // requests meanwhile): there is no behaviour of its own to keep.
        own_reload: style != NginxStyle::SingleProcess,
        daemonizes: style == NginxStyle::Daemon,
        ..Program::new(
            name,
            format!("nginx {}", reported_version(&nginx, &["-v"])),
            words(&[
                &nginx,
                &"-p",
                &sandbox.file("nginx"),
                &"-e",
                &error_log,
                &"-c",
                &config,
            ]),
            Box::new(deploy),
        )
    }
}

/// `redis-server` without persistence, its files in the sandbox.
fn redis(sandbox: &Sandbox, port: u16) -> Program {
    let redis = installed("redis-server", "redis-server");
    Program {
        protocol: Protocol::Redis,
        versioning: Versioning::Drawn,
        ..Program::new(
            "redis-server",
            format!("Redis {}", reported_version(&redis, &["--version"])),
            words(&[
                &redis,
                &"--port",
                &port.to_string(),
                &"--bind",
                &"127.0.0.1",
                &"--save",
                &"",
                &"--appendonly",
                &"no",
                &"--dir",
                &sandbox.file(""),
            ]),
            // Nothing to deploy: every start draws its own version.
            Box::new(|_| {}),
        )
    }
}

/// `memcached` on TCP only (`-U 0`); `-u root` is needed (and only heeded) when run as root.
fn memcached(_sandbox: &Sandbox, port: u16) -> Program {
    let memcached = installed("memcached", "memcached");
    Program {
        protocol: Protocol::Memcached {
            key: MEMCACHED_KEY.into(),
        },
        versioning: Versioning::Labelled,
        ..Program::new(
            "memcached",
            format!("memcached {}", reported_version(&memcached, &["-V"])),
            words(&[
                &memcached,
                &"-p",
                &port.to_string(),
                &"-l",
                &"127.0.0.1",
                &"-U",
                &"0",
                &"-u",
                &"root",
            ]),
            // Nothing to deploy: the test labels each new generation.
            Box::new(|_| {}),
        )
    }
}

/// The command lines of `pids`, for messages.
fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline: Vec<String> = cmdline
                .split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            format!("{pid} ({})", cmdline.join(" "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What became of the process the test launched, for a failure message.
fn launched_exit(launched: &mut huptime_tests::ServerProcess) -> String {
    match launched.try_exit_status() {
        Some(status) => format!("the launched process {} exited: {status}", launched.pid()),
        None => format!("the launched process {} still runs", launched.pid()),
    }
}

/// Sets up the program `make` makes in a new sandbox and runs the scenario in `mode`.
fn restart_program(make: fn(&Sandbox, u16) -> Program, mode: Mode, test: &str) {
    let sandbox = Sandbox::new(&format!("{test}-{mode:?}"));
    let port = free_port();
    let program = make(&sandbox, port);
    let mut run = Run {
        program: &program,
        mode,
        endpoint: Endpoint::from(port),
        control: Controller::new(&sandbox),
        versions: Vec::new(),
        planned: 0,
    };
    run.scenario(&sandbox);
}

/// One program under load in one mode: the whole scenario of the module doc.
struct Run<'a> {
    program: &'a Program,
    mode: Mode,
    endpoint: Endpoint,
    control: Controller<'a>,
    /// Every version served so far, in order.
    versions: Vec<String>,
    /// Versions planned so far (`v1`, `v2`, ...), also for the own reload.
    planned: usize,
}

impl Run<'_> {
    fn next_version(&mut self) -> String {
        self.planned += 1;
        format!("v{}", self.planned)
    }

    /// One request that must succeed.
    fn probe(&self, when: &str) -> Reply {
        self.program
            .protocol
            .request(&self.endpoint)
            .unwrap_or_else(|e| panic!("{when}: a request failed: {e}"))
    }

    /// Checks that a new generation serves, and returns its version: `planned` for a chosen
    /// version (deployed before the start), a new one for a drawn version, `planned` as the
    /// label of a fresh memcached.
    fn reached_version(&self, planned: &str, when: &str) -> String {
        let reply = self.probe(when);
        match self.program.versioning {
            Versioning::Chosen => {
                assert_eq!(
                    reply.version, planned,
                    "{when}: the new version does not serve: {reply:?}"
                );
                reply.version
            }
            Versioning::Drawn => {
                assert!(
                    !self.versions.contains(&reply.version),
                    "{when}: the version {:?} served before: no new start: {reply:?}",
                    reply.version
                );
                reply.version
            }
            Versioning::Labelled => {
                assert_eq!(
                    reply.version, "",
                    "{when}: a new generation starts with an empty cache, but this one has \
                     the label of an old one: {reply:?}"
                );
                let stored = memcached_add(&self.endpoint, MEMCACHED_KEY, planned)
                    .unwrap_or_else(|e| panic!("{when}: labelling the generation failed: {e}"));
                assert!(
                    stored,
                    "{when}: the label was set meanwhile by someone else"
                );
                let reply = self.probe(when);
                assert_eq!(
                    reply.version, planned,
                    "{when}: the label does not read back: {reply:?}"
                );
                reply.version
            }
        }
    }

    /// The whole scenario of the module doc; records the result for the table.
    fn scenario(&mut self, sandbox: &Sandbox) {
        let program = self.program;
        let began = Instant::now();

        let first = self.next_version();
        (program.deploy)(&first);
        let mut command = self.control.huptime();
        command
            .args(self.mode.huptime_args())
            .args(program.signal)
            .args(std::env::var_os(DEBUG_ENV).map(|_| "--debug"))
            .arg("--")
            .args(&program.words)
            .envs(program.env.iter().map(|(k, v)| (k, v)));
        if let Some(cwd) = &program.cwd {
            command.current_dir(cwd).env("PWD", cwd);
        }
        let mut launched =
            sandbox.start_server_speaking(command, &self.endpoint, &program.protocol);
        let version = self.reached_version(&first, "the first start");
        self.versions.push(version.clone());
        // A daemon records the instance just after its first process exits: wait for it.
        let status = self
            .control
            .wait_for_instance(&program.words, INSTANCE_TIMEOUT);
        assert_eq!(status.generation, 0, "the first start: {status:?}");
        if !program.daemonizes {
            assert_eq!(
                status.pid,
                launched.pid(),
                "huptime runs the program in the process it was started as"
            );
        }
        let (mut master, mut generation) = (status.pid, status.generation);
        let mut masters = vec![master];

        let load = Load::start_speaking(&self.endpoint, &program.protocol, LOAD_CLIENTS);
        load.wait_until_served_by(&version, SERVED_TIMEOUT);
        let under_load = Instant::now();
        let mut own_reloads = 0;

        for n in 1..=RESTARTS {
            if program.own_reload && n == OWN_RELOAD_AFTER + 1 {
                self.own_reload(&load, master, generation);
                own_reloads += 1;
            }
            let planned = self.next_version();
            let when = format!("restart {n} (to {planned})");
            (program.deploy)(&planned);
            let restarted = self.control.restart(&program.words).unwrap_or_else(|outcome| {
                let launched_exit = launched_exit(&mut launched);
                panic!(
                    "{when}: huptime --restart failed ({launched_exit}): {outcome:#?}\nprocesses \
                     left: {}",
                    describe(&sandbox.processes())
                )
            });
            eprintln!("{when}: {restarted:?}");
            assert_eq!(
                (restarted.old_pid, restarted.old_generation),
                (master, generation),
                "{when}: huptime --restart did not restart the current master"
            );
            assert_eq!(
                restarted.new_generation,
                generation + 1,
                "{when}: the new generation's number"
            );
            match self.mode {
                Mode::Fork => assert_ne!(
                    restarted.new_pid, master,
                    "{when}: fork mode: the new generation is a new process"
                ),
                Mode::Exec if !program.daemonizes => assert_eq!(
                    restarted.new_pid, master,
                    "{when}: exec mode: the new generation runs in the same process"
                ),
                Mode::Exec => {}
            }
            let version = self.reached_version(&planned, &when);
            load.wait_until_served_by(&version, SERVED_TIMEOUT);
            self.versions.push(version);
            (master, generation) = (restarted.new_pid, restarted.new_generation);
            masters.push(master);
        }

        let report = load.stop_without_failures();
        let expected: BTreeSet<&str> = self.versions.iter().map(String::as_str).collect();
        for version in report.versions() {
            let unlabelled =
                matches!(program.versioning, Versioning::Labelled) && version.is_empty();
            assert!(
                unlabelled || expected.contains(version),
                "the load saw version {version:?}, which no generation served:\n{report}"
            );
        }

        // Old generations: every old master, and every process that answered for an old version
        // only, must go; and nothing outside the current master's process tree may be left.
        let current = self.versions.last().expect("a version");
        let current_pids = report.pids_with(current);
        let old: Vec<u32> = report
            .replies
            .keys()
            .filter(|(version, _)| version != current)
            .map(|&(_, pid)| pid)
            .chain(masters)
            .filter(|&pid| pid != 0 && pid != master && !current_pids.contains(&pid))
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect();
        if let Err(left) = wait_gone(&old, RETIRE_TIMEOUT) {
            panic!(
                "processes of old generations still run {RETIRE_TIMEOUT:?} after the last \
                 restart: {}",
                describe(&left)
            );
        }
        let mut outside = Vec::new();
        let alone = wait_until(RETIRE_TIMEOUT, || {
            outside = sandbox.processes_outside(master);
            outside.is_empty()
        });
        assert!(
            alone,
            "processes outside the current master {master}'s tree still run {RETIRE_TIMEOUT:?} \
             after the last restart: {}",
            describe(&outside)
        );
        eprintln!(
            "{} in {:?} mode: {RESTARTS} restarts, {own_reloads} own reloads, {} requests, \
             {:.1} s under load, {:.1} s in all",
            program.name,
            self.mode,
            report.successes(),
            under_load.elapsed().as_secs_f64(),
            began.elapsed().as_secs_f64()
        );
        compat::record(&CompatResult {
            run: compat::this_run(),
            program: program.name.clone(),
            version: program.version.clone(),
            mode: match self.mode {
                Mode::Fork => "fork",
                Mode::Exec => "exec",
            }
            .into(),
            restarts: RESTARTS as u64,
            own_reloads,
            requests: report.successes(),
            failures: report.failure_count(),
            seconds: under_load.elapsed().as_secs(),
        });
    }

    /// The program's own SIGHUP reload, under the load: a new version served by the same master
    /// in the same huptime generation, with no restart recorded, and the workers that served the
    /// old version gone.
    fn own_reload(&mut self, load: &Load, master: u32, generation: u64) {
        let program = self.program;
        let before = self.control.status(&program.words);
        assert_eq!(
            (before.pid, before.generation),
            (master, generation),
            "--status before the program's own reload"
        );
        let old_version = self.versions.last().expect("a version").clone();
        let old_workers: BTreeSet<u32> = load
            .replies_so_far()
            .into_keys()
            .filter(|(version, pid)| *version == old_version && *pid != master)
            .map(|(_, pid)| pid)
            .collect();
        let version = self.next_version();
        let when = format!("the program's own SIGHUP reload (to {version})");
        (program.deploy)(&version);
        send_signal(master, SIGHUP).unwrap_or_else(|e| panic!("SIGHUP to {master}: {e}"));
        let reply = program
            .protocol
            .wait_for(&self.endpoint, &when, RELOAD_TIMEOUT, |reply| {
                reply.version == version
            });
        load.wait_until_served_by(&version, SERVED_TIMEOUT);
        eprintln!("{when}: served by {reply:?}");
        self.versions.push(version.clone());

        let after = self.control.status(&program.words);
        assert_eq!(
            after, before,
            "{when}: huptime restarted the program (its --status changed)"
        );
        let old: Vec<u32> = old_workers.iter().copied().collect();
        if let Err(left) = wait_gone(&old, RELOAD_TIMEOUT) {
            panic!(
                "{when}: the workers of the old config still run: {}",
                describe(&left)
            );
        }
        if !old_workers.is_empty() {
            assert!(
                !old_workers.contains(&reply.pid),
                "{when}: a worker of the old config served the new one: {reply:?}"
            );
        }
        eprintln!(
            "{when}: master {master}, generation {generation}; old workers {old_workers:?} gone"
        );
    }
}

/// One test per program in `mode`: `$name => $make` where `$make(&sandbox, port)` sets the
/// program up; attributes (`#[ignore = "..."]`) go before the name.
macro_rules! program_tests {
    ($mode:expr; $($(#[$attr:meta])* $name:ident => $make:expr),* $(,)?) => {
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                restart_program($make, $mode, stringify!($name))
            }
        )*
    };
}

mod fork {
    use super::*;

    program_tests! { Mode::Fork;
        python_http_server => crate::python_http_server,
        node => crate::node,
        nginx_single_process => |sandbox, port| crate::nginx(sandbox, port, NginxStyle::SingleProcess),
        nginx_workers => |sandbox, port| crate::nginx(sandbox, port, NginxStyle::Workers),
        nginx_daemon => |sandbox, port| crate::nginx(sandbox, port, NginxStyle::Daemon),
        redis => crate::redis,
        memcached => crate::memcached,
        java => crate::java,
        gunicorn => crate::gunicorn,
    }
}

mod exec {
    use super::*;

    program_tests! { Mode::Exec;
        python_http_server => crate::python_http_server,
        node => crate::node,
        nginx_single_process => |sandbox, port| crate::nginx(sandbox, port, NginxStyle::SingleProcess),
        nginx_workers => |sandbox, port| crate::nginx(sandbox, port, NginxStyle::Workers),
        nginx_daemon => |sandbox, port| crate::nginx(sandbox, port, NginxStyle::Daemon),
        redis => crate::redis,
        memcached => crate::memcached,
        java => crate::java,
        gunicorn => crate::gunicorn,
    }
}
