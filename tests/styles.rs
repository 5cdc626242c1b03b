//! Every server style restarted three times under load, in fork and in exec mode: no client
//! notices, a request in flight at each restart is answered in full, and the old generations
//! go away. Needs `cargo build --workspace` first (for `huptime` and `libhuptime.so`).

use huptime_tests::{Mode, RestartPlan, Sandbox, Style, free_port, restart_under_load};

fn restart_style(style: Style, mode: Mode) {
    let sandbox = Sandbox::new(&format!("{style:?}-{mode:?}"));
    let port = free_port();
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    let plan = RestartPlan {
        server: style.command(port, &version_file, &pid_file),
        mode,
        port,
        pid_file,
        replies_from_master: style.replies_from_master(),
    };
    restart_under_load(&sandbox, &plan, |version| {
        std::fs::write(&version_file, format!("{version}\n")).expect("write the version file");
    });
}

/// One test per style and mode, named `fork::<style>` and `exec::<style>`.
macro_rules! style_tests {
    ($($name:ident => $style:expr),* $(,)?) => {
        mod fork {
            use super::*;
            $(#[test] fn $name() { restart_style($style, Mode::Fork) })*
        }
        mod exec {
            use super::*;
            $(#[test] fn $name() { restart_style($style, Mode::Exec) })*
        }
    };
}

style_tests! {
    blocking => Style::Blocking,
    select => Style::Select,
    poll => Style::Poll,
    epoll => Style::Epoll,
    threaded => Style::Threaded,
    forking => Style::Forking,
    threadpool => Style::Threadpool,
    prefork => Style::Prefork,
    asyncio => Style::Asyncio,
}
