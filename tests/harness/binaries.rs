//! The binaries under test, found in this workspace's build output.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where cargo put the binaries of the profile this test was built with (`target/debug`,
/// `target/release`, `target/<triple>/<profile>`): test executables live in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test executable's path");
    let dir = exe
        .parent()
        .expect("test executable has no parent directory");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent()
            .expect("deps/ has no parent directory")
            .to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Cargo's target directory of this build (the parent of [`profile_dir`]).
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile
        .parent()
        .map_or(profile.clone(), |dir| dir.to_path_buf())
}

fn built(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first (with the same profile as the tests)",
        path.display()
    );
    path
}

/// The `huptime` launcher of this build. Also checks that `libhuptime.so` and its engine were
/// built beside it, where the launcher looks for them: tests run the launcher as a user would.
pub fn huptime_binary() -> PathBuf {
    built("libhuptime.so");
    built("libhuptime_engine.so");
    built("huptime")
}

/// Installs a copy of the Rust test server at `dest` that answers with `version`.
///
/// The version is a trailer line appended to the executable (see `servers/testserver.rs`). The
/// copy is written aside and renamed over `dest`, so a server running from `dest` keeps its own
/// file and the next start of `dest` runs the new one, as a real deploy does.
pub fn write_versioned_testserver(source: &Path, dest: &Path, version: &str) {
    let tmp = dest.with_extension("new");
    fs::copy(source, &tmp)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", source.display(), tmp.display()));
    let mut file = OpenOptions::new()
        .append(true)
        .open(&tmp)
        .expect("open the server copy");
    write!(file, "\nHUPVERSION={version}\n").expect("append the version trailer");
    drop(file);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .expect("make the server copy executable");
    fs::rename(&tmp, dest)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), dest.display()));
}
