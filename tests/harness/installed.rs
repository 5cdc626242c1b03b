//! Real programs installed on the machine (nginx, redis-server, ...): where they are, and which
//! version they are. A missing program fails the test that needs it, with the package to install:
//! `.ci/run` installs them all, so a skip would only hide a broken CI setup.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Directories searched after `PATH`: daemons such as nginx live in `sbin`, which a user's `PATH`
/// may lack.
const SBIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The executable `name`, found through `PATH` or in the `sbin` directories.
///
/// # Panics
/// If there is none, naming the Debian `package` that provides it.
pub fn installed(name: &str, package: &str) -> PathBuf {
    let path_dirs = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed (not in PATH, nor in {}): install the Debian package \
                 {package} (`.ci/run` does)",
                SBIN_DIRS.join(", ")
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The version `program` reports when run with `args` (`--version`, `-v`, ...): the first word
/// of its output, stdout then stderr, that looks like `1.22.1` (a leading `v` dropped).
///
/// # Panics
/// If it cannot be run or reports no such word.
pub fn reported_version(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", program.display()));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    version_in(&text).unwrap_or_else(|| {
        panic!(
            "{} {args:?} reports no version: {text:?}",
            program.display()
        )
    })
}

fn version_in(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || "/=\"(),".contains(c))
        .map(|word| word.strip_prefix('v').unwrap_or(word))
        .find(|word| {
            word.starts_with(|c: char| c.is_ascii_digit())
                && word.contains('.')
                && word.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::version_in;

    #[test]
    fn finds_versions_as_programs_print_them() {
        for (text, version) in [
            ("Python 3.11.7\n", "3.11.7"),
            ("v20.20.2\n", "20.20.2"),
            ("nginx version: nginx/1.22.1\n", "1.22.1"),
            (
                "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0",
                "7.0.15",
            ),
            ("memcached 1.6.18\n", "1.6.18"),
            ("openjdk version \"17.0.15\" 2025-04-15\n", "17.0.15"),
            ("gunicorn (version 20.1.0)\n", "20.1.0"),
        ] {
            assert_eq!(version_in(text).as_deref(), Some(version), "{text:?}");
        }
        assert_eq!(version_in("no version here 2025"), None);
    }
}
