//! The handover state: what one generation tells the next across `execve`, in one environment
//! variable.
//!
//! The format is versioned text, `huptime/1;key=value;...`. A reader accepts every version it
//! knows and ignores keys it does not know, so a restart that also upgrades huptime (the new
//! generation loads the newly installed library) keeps its sockets. Anything it cannot read
//! makes the process start as a first generation instead of failing.

use std::fmt;
use std::os::fd::RawFd;

use crate::identity::SocketIdentity;

/// Prefix and version of the current encoding.
pub const FORMAT: &str = "huptime/1";

/// A listening or bound socket handed to the next generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InheritedSocket {
    /// Descriptor number in the new process (survives `execve`, not close-on-exec).
    pub fd: RawFd,
    /// What a bind must ask for to get this socket back.
    pub identity: SocketIdentity,
}

/// The state handed from one generation to the next.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HandoverState {
    /// Generation number of the process that adopts this state (0 for the first start).
    pub generation: u64,
    /// PID expected to adopt the state; any other process (a subprocess of the program, which
    /// inherits the environment) ignores it.
    pub pid: i32,
    /// Instance name: stays the same across generations, names the instance record.
    pub instance: String,
    /// Copies of descriptors 0, 1, 2 as they were at the first start.
    pub stdio: Option<[RawFd; 3]>,
    /// Signal mask of the first start (bit `n - 1` for signal `n`).
    pub sigmask: u64,
    /// Signals that were ignored at the first start (bit `n - 1` for signal `n`).
    pub ignored: u64,
    /// Where the new generation reports readiness (or the failure to start) to the old one.
    pub ready_fd: Option<RawFd>,
    /// When the instance was first started, in seconds since the Unix epoch.
    pub since: u64,
    /// When the restart that starts this generation began (milliseconds since the Unix epoch),
    /// so the new master can report how long it took.
    pub restart_began_ms: Option<u64>,
    /// The sockets handed over, in the order the old generation bound them.
    pub sockets: Vec<InheritedSocket>,
}

/// Why a state could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Not a huptime state, or a version this library does not know.
    Foreign(String),
    /// A huptime state that is truncated or has a malformed field.
    Malformed(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Foreign(head) => write!(f, "unknown handover format {head:?}"),
            Self::Malformed(field) => write!(f, "malformed handover field {field:?}"),
        }
    }
}

impl std::error::Error for StateError {}

impl HandoverState {
    /// Encodes the state for the environment.
    pub fn encode(&self) -> String {
        let mut out = format!(
            "{FORMAT};gen={};pid={};instance={};mask={:x};ign={:x};since={}",
            self.generation, self.pid, self.instance, self.sigmask, self.ignored, self.since
        );
        if let Some([a, b, c]) = self.stdio {
            out.push_str(&format!(";stdio={a},{b},{c}"));
        }
        if let Some(fd) = self.ready_fd {
            out.push_str(&format!(";ready={fd}"));
        }
        if let Some(began) = self.restart_began_ms {
            out.push_str(&format!(";began={began}"));
        }
        for socket in &self.sockets {
            out.push_str(&format!(";sock={},{}", socket.fd, socket.identity.encode()));
        }
        out.push_str(";end");
        out
    }

    /// Decodes a state. Unknown keys are skipped; a missing `end` marks truncation.
    pub fn decode(text: &str) -> Result<Self, StateError> {
        let mut fields = text.split(';');
        let head = fields.next().unwrap_or_default();
        if head != FORMAT {
            return Err(StateError::Foreign(head.chars().take(32).collect()));
        }
        let mut state = Self::default();
        let mut seen = (false, false, false);
        for field in fields {
            if field == "end" {
                return if seen == (true, true, true) {
                    Ok(state)
                } else {
                    Err(StateError::Malformed("gen, pid or instance missing".into()))
                };
            }
            let bad = || StateError::Malformed(field.chars().take(64).collect());
            let (key, value) = field.split_once('=').ok_or_else(bad)?;
            match key {
                "gen" => {
                    state.generation = value.parse().map_err(|_| bad())?;
                    seen.0 = true;
                }
                "pid" => {
                    state.pid = value.parse().map_err(|_| bad())?;
                    seen.1 = true;
                }
                "instance" => {
                    if !is_instance_name(value) {
                        return Err(bad());
                    }
                    state.instance = value.to_owned();
                    seen.2 = true;
                }
                "mask" => state.sigmask = u64::from_str_radix(value, 16).map_err(|_| bad())?,
                "ign" => state.ignored = u64::from_str_radix(value, 16).map_err(|_| bad())?,
                "since" => state.since = value.parse().map_err(|_| bad())?,
                "stdio" => {
                    let fds: Vec<RawFd> = value
                        .split(',')
                        .map(|fd| parse_fd(fd).ok_or_else(bad))
                        .collect::<Result<_, _>>()?;
                    let fds: [RawFd; 3] = fds.try_into().map_err(|_| bad())?;
                    state.stdio = Some(fds);
                }
                "ready" => state.ready_fd = Some(parse_fd(value).ok_or_else(bad)?),
                "began" => state.restart_began_ms = Some(value.parse().map_err(|_| bad())?),
                "sock" => {
                    let (fd, identity) = value.split_once(',').ok_or_else(bad)?;
                    state.sockets.push(InheritedSocket {
                        fd: parse_fd(fd).ok_or_else(bad)?,
                        identity: identity.parse().map_err(|_| bad())?,
                    });
                }
                _ => {}
            }
        }
        Err(StateError::Malformed("truncated (no end marker)".into()))
    }
}

/// Instance names appear in file names and in `;`-separated text.
pub fn is_instance_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

fn parse_fd(text: &str) -> Option<RawFd> {
    text.parse::<RawFd>().ok().filter(|fd| *fd >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Address, SockKind};
    use std::net::Ipv4Addr;

    fn sample() -> HandoverState {
        HandoverState {
            generation: 7,
            pid: 4242,
            instance: "4242-1".into(),
            stdio: Some([1000, 1001, 1002]),
            sigmask: 1 << 13,
            ignored: 1 << 12,
            ready_fd: Some(9),
            since: 1_700_000_000,
            restart_began_ms: Some(1_700_000_123_456),
            sockets: vec![
                InheritedSocket {
                    fd: 5,
                    identity: SocketIdentity {
                        kind: SockKind::Stream,
                        address: Address::V4(Ipv4Addr::LOCALHOST, 8080),
                        v6only: false,
                        reuseport: true,
                    },
                },
                InheritedSocket {
                    fd: 6,
                    identity: SocketIdentity {
                        kind: SockKind::Stream,
                        address: Address::V4(Ipv4Addr::LOCALHOST, 8080),
                        v6only: false,
                        reuseport: true,
                    },
                },
                InheritedSocket {
                    fd: 8,
                    identity: SocketIdentity {
                        kind: SockKind::Datagram,
                        address: Address::UnixPath(b"/run/x;y=z".to_vec()),
                        v6only: false,
                        reuseport: false,
                    },
                },
            ],
        }
    }

    #[test]
    fn round_trip_keeps_order_of_same_identity() {
        let state = sample();
        let decoded = HandoverState::decode(&state.encode()).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(decoded.sockets[0].fd, 5);
        assert_eq!(decoded.sockets[1].fd, 6);
    }

    #[test]
    fn minimal_state() {
        let state = HandoverState {
            pid: 1,
            instance: "a".into(),
            ..Default::default()
        };
        assert_eq!(HandoverState::decode(&state.encode()).unwrap(), state);
    }

    #[test]
    fn truncated_state_is_rejected() {
        let text = sample().encode();
        for cut in [text.len() - 1, text.len() - 4, text.len() / 2, 12] {
            assert!(
                matches!(
                    HandoverState::decode(&text[..cut]),
                    Err(StateError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn foreign_or_future_versions_are_rejected() {
        for text in ["", "hello", "huptime/2;gen=1;end", "HUPTIME/1;end"] {
            assert!(matches!(
                HandoverState::decode(text),
                Err(StateError::Foreign(_))
            ));
        }
    }

    #[test]
    fn malformed_fields_are_rejected() {
        for text in [
            "huptime/1;gen=x;pid=1;instance=a;end",
            "huptime/1;gen=1;pid=1;instance=a;stdio=1,2;end",
            "huptime/1;gen=1;pid=1;instance=a;sock=-3,stream/in4/1.2.3.4/1/-;end",
            "huptime/1;gen=1;pid=1;instance=a;sock=3,nonsense;end",
            "huptime/1;gen=1;pid=1;instance=../x;end",
            "huptime/1;gen=1;instance=a;end",
            "huptime/1;gen=1;pid=1;instance=a;noequals;end",
        ] {
            assert!(
                matches!(HandoverState::decode(text), Err(StateError::Malformed(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn unknown_keys_from_a_newer_minor_are_skipped() {
        let text = "huptime/1;gen=2;pid=9;instance=i;future=thing;end";
        let state = HandoverState::decode(text).unwrap();
        assert_eq!(state.generation, 2);
        assert_eq!(state.pid, 9);
    }
}
