//! TCP ports for test servers.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// Ports already handed out in this process: tests run in parallel threads, and a port must not
/// go to two of them even after the first test's server closed it.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Lowest port picked. Ports are taken below the kernel's ephemeral range, so that the source
/// port of a client connection can never sit on a port a server is about to bind.
const LOWEST: u16 = 10_000;

/// A TCP port free on 127.0.0.1 and not handed out before in this process.
pub fn free_port() -> u16 {
    let (low, high) = candidate_range();
    let span = u32::from(high - low);
    // A random start keeps separate test processes (e.g. under nextest) apart.
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for offset in 0..span {
        let port = low + ((start + offset) % span) as u16;
        if !handed_out.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free TCP port in {low}..{high}");
}

/// Ports from [`LOWEST`] up to the start of the ephemeral range.
fn candidate_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    assert!(
        ephemeral_low > LOWEST + 1000,
        "the ephemeral port range starts at {ephemeral_low}, too low to pick test ports below it"
    );
    (LOWEST, ephemeral_low)
}

/// How many TCP sockets (IPv4 and IPv6) are listening on `port`, from `/proc/net/tcp*`.
pub fn listening_sockets(port: u16) -> usize {
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            // No tcp6 table when the kernel has no IPv6.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {table}: {e}"),
        };
        count += text
            .lines()
            .skip(1)
            .filter(|line| is_listener_on(line, port))
            .count();
    }
    count
}

/// One row of `/proc/net/tcp`: `sl local_address rem_address st ...`, where `local_address` is
/// `ADDR:PORT` in hex and state `0A` is LISTEN.
fn is_listener_on(row: &str, port: u16) -> bool {
    let fields: Vec<&str> = row.split_whitespace().collect();
    let local_port = fields
        .get(1)
        .and_then(|address| address.rsplit_once(':'))
        .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
    fields.get(3) == Some(&"0A") && local_port == Some(port)
}
