//! The identity of a bound socket: what decides that a bind in a new generation asks for the
//! same socket as one handed over by the old generation.
//!
//! Identity is family + type + normalized address + the options that change what the socket
//! means (`IPV6_V6ONLY`, `SO_REUSEPORT`). Raw `sockaddr` bytes are never compared: Java passes a
//! 28-byte `sockaddr_in6`, some runtimes pad `sockaddr_in`, and Unix paths may carry trailing NULs.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::hex;

/// Socket type, as far as identity is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SockKind {
    /// `SOCK_STREAM`: has listeners and accepted connections.
    Stream,
    /// `SOCK_DGRAM`: bound, read by every generation that holds it.
    Datagram,
    /// `SOCK_SEQPACKET`: connection-oriented like a stream.
    SeqPacket,
}

impl SockKind {
    /// Maps a `SO_TYPE` value; `None` for raw and other types we do not hand over.
    pub fn from_so_type(so_type: i32) -> Option<Self> {
        match so_type {
            libc::SOCK_STREAM => Some(Self::Stream),
            libc::SOCK_DGRAM => Some(Self::Datagram),
            libc::SOCK_SEQPACKET => Some(Self::SeqPacket),
            _ => None,
        }
    }

    /// Whether sockets of this kind listen and accept connections.
    pub fn is_connection_oriented(self) -> bool {
        !matches!(self, Self::Datagram)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Datagram => "dgram",
            Self::SeqPacket => "seqpacket",
        }
    }
}

/// A normalized socket address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// IPv4 address and port.
    V4(Ipv4Addr, u16),
    /// IPv6 address, port and scope id (flow info is not part of the identity).
    V6(Ipv6Addr, u16, u32),
    /// Unix socket bound to a filesystem path (bytes as given, without trailing NULs).
    UnixPath(Vec<u8>),
    /// Unix socket in the abstract namespace (the name after the leading NUL).
    UnixAbstract(Vec<u8>),
}

impl Address {
    /// Parses a raw `sockaddr` as passed to `bind()`. `None` for families we do not track,
    /// truncated addresses, and unnamed (autobind) Unix addresses.
    pub fn from_sockaddr(raw: &[u8]) -> Option<Self> {
        if raw.len() < 2 {
            return None;
        }
        let family = i32::from(u16::from_ne_bytes([raw[0], raw[1]]));
        match family {
            libc::AF_INET if raw.len() >= 8 => {
                let port = u16::from_be_bytes([raw[2], raw[3]]);
                let ip = Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]);
                Some(Self::V4(ip, port))
            }
            libc::AF_INET6 if raw.len() >= 24 => {
                let port = u16::from_be_bytes([raw[2], raw[3]]);
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&raw[8..24]);
                let scope = if raw.len() >= 28 {
                    u32::from_ne_bytes([raw[24], raw[25], raw[26], raw[27]])
                } else {
                    0
                };
                Some(Self::V6(Ipv6Addr::from(octets), port, scope))
            }
            libc::AF_UNIX => {
                let path = &raw[2..];
                match path.first() {
                    None => None,
                    Some(0) if path.len() > 1 => Some(Self::UnixAbstract(path[1..].to_vec())),
                    Some(0) => None,
                    Some(_) => {
                        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                        Some(Self::UnixPath(path[..end].to_vec()))
                    }
                }
            }
            _ => None,
        }
    }

    /// Whether [`Address::from_sockaddr`] would give an address, without building it (no
    /// allocation: `bind` asks this on every call).
    pub fn is_tracked(raw: &[u8]) -> bool {
        if raw.len() < 2 {
            return false;
        }
        match i32::from(u16::from_ne_bytes([raw[0], raw[1]])) {
            libc::AF_INET => raw.len() >= 8,
            libc::AF_INET6 => raw.len() >= 24,
            libc::AF_UNIX => raw.len() > 2 && (raw[2] != 0 || raw.len() > 3),
            _ => false,
        }
    }

    /// The port, for internet addresses.
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::V4(_, port) | Self::V6(_, port, _) => Some(*port),
            _ => None,
        }
    }

    /// A bind to port 0 asks the kernel for a fresh port: it never matches an inherited socket.
    pub fn is_ephemeral(&self) -> bool {
        self.port() == Some(0)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip, port) => write!(f, "{ip}:{port}"),
            Self::V6(ip, port, 0) => write!(f, "[{ip}]:{port}"),
            Self::V6(ip, port, scope) => write!(f, "[{ip}%{scope}]:{port}"),
            Self::UnixPath(path) => write!(f, "{}", String::from_utf8_lossy(path)),
            Self::UnixAbstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// Everything that makes two binds ask for the same socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SocketIdentity {
    /// Stream, datagram or seqpacket.
    pub kind: SockKind,
    /// The normalized address.
    pub address: Address,
    /// `IPV6_V6ONLY` (IPv6 only): a dual-stack and a v6-only socket on one port differ.
    pub v6only: bool,
    /// `SO_REUSEPORT`: one of several sockets sharing a port.
    pub reuseport: bool,
}

impl fmt::Display for SocketIdentity {
    /// Human-readable form for logs and `--status`, e.g. `tcp 127.0.0.1:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match (&self.address, self.kind) {
            (Address::V4(..) | Address::V6(..), SockKind::Stream) => "tcp",
            (Address::V4(..) | Address::V6(..), SockKind::Datagram) => "udp",
            (Address::V4(..) | Address::V6(..), SockKind::SeqPacket) => "sctp",
            (_, SockKind::Stream) => "unix",
            (_, SockKind::Datagram) => "unixgram",
            (_, SockKind::SeqPacket) => "unixpacket",
        };
        write!(f, "{proto} {}", self.address)?;
        if self.v6only {
            f.write_str(" v6only")?;
        }
        if self.reuseport {
            f.write_str(" reuseport")?;
        }
        Ok(())
    }
}

/// Error from parsing an encoded identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadIdentity(pub String);

impl fmt::Display for BadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad socket identity {:?}", self.0)
    }
}

impl std::error::Error for BadIdentity {}

impl SocketIdentity {
    /// Compact, unambiguous encoding used inside the handover state: fields separated by `/`.
    pub fn encode(&self) -> String {
        let address = match &self.address {
            Address::V4(ip, port) => format!("in4/{ip}/{port}"),
            Address::V6(ip, port, scope) => format!("in6/{ip}/{port}/{scope}"),
            Address::UnixPath(path) => format!("path/{}", hex::encode(path)),
            Address::UnixAbstract(name) => format!("abstract/{}", hex::encode(name)),
        };
        format!(
            "{}/{}/{}{}",
            self.kind.name(),
            address,
            if self.v6only { "v6only" } else { "-" },
            if self.reuseport { "+reuseport" } else { "" }
        )
    }
}

impl FromStr for SocketIdentity {
    type Err = BadIdentity;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadIdentity(text.to_owned());
        let fields: Vec<&str> = text.split('/').collect();
        let kind = match fields.first().copied() {
            Some("stream") => SockKind::Stream,
            Some("dgram") => SockKind::Datagram,
            Some("seqpacket") => SockKind::SeqPacket,
            _ => return Err(bad()),
        };
        let (address, rest) = match fields.get(1).copied() {
            Some("in4") if fields.len() == 5 => (
                Address::V4(
                    fields[2].parse().map_err(|_| bad())?,
                    fields[3].parse().map_err(|_| bad())?,
                ),
                fields[4],
            ),
            Some("in6") if fields.len() == 6 => (
                Address::V6(
                    fields[2].parse().map_err(|_| bad())?,
                    fields[3].parse().map_err(|_| bad())?,
                    fields[4].parse().map_err(|_| bad())?,
                ),
                fields[5],
            ),
            Some("path") if fields.len() == 4 => (
                Address::UnixPath(hex::decode(fields[2]).ok_or_else(bad)?),
                fields[3],
            ),
            Some("abstract") if fields.len() == 4 => (
                Address::UnixAbstract(hex::decode(fields[2]).ok_or_else(bad)?),
                fields[3],
            ),
            _ => return Err(bad()),
        };
        let (v6only, reuseport) = match rest {
            "-" => (false, false),
            "v6only" => (true, false),
            "-+reuseport" => (false, true),
            "v6only+reuseport" => (true, true),
            _ => return Err(bad()),
        };
        Ok(Self {
            kind,
            address,
            v6only,
            reuseport,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockaddr_in(ip: [u8; 4], port: u16, total_len: usize) -> Vec<u8> {
        let mut raw = vec![0u8; total_len];
        raw[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        raw[2..4].copy_from_slice(&port.to_be_bytes());
        raw[4..8].copy_from_slice(&ip);
        raw
    }

    fn sockaddr_in6(ip: Ipv6Addr, port: u16, scope: u32, len: usize) -> Vec<u8> {
        let mut raw = vec![0u8; 28];
        raw[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        raw[2..4].copy_from_slice(&port.to_be_bytes());
        raw[4..8].copy_from_slice(&7u32.to_ne_bytes()); // flow info: not identity
        raw[8..24].copy_from_slice(&ip.octets());
        raw[24..28].copy_from_slice(&scope.to_ne_bytes());
        raw.truncate(len);
        raw
    }

    fn sockaddr_un(path: &[u8], padding: usize) -> Vec<u8> {
        let mut raw = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        raw.extend_from_slice(path);
        raw.extend(std::iter::repeat_n(0, padding));
        raw
    }

    #[test]
    fn ipv4_ignores_padding() {
        let plain = Address::from_sockaddr(&sockaddr_in([127, 0, 0, 1], 8080, 16)).unwrap();
        let padded = Address::from_sockaddr(&sockaddr_in([127, 0, 0, 1], 8080, 32)).unwrap();
        assert_eq!(plain, Address::V4(Ipv4Addr::LOCALHOST, 8080));
        assert_eq!(plain, padded);
        assert_eq!(plain.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn ipv6_ignores_flowinfo_and_short_form() {
        let full = Address::from_sockaddr(&sockaddr_in6(Ipv6Addr::LOCALHOST, 80, 0, 28)).unwrap();
        let short = Address::from_sockaddr(&sockaddr_in6(Ipv6Addr::LOCALHOST, 80, 0, 24)).unwrap();
        assert_eq!(full, short);
        assert_eq!(full, Address::V6(Ipv6Addr::LOCALHOST, 80, 0));
        let scoped = Address::from_sockaddr(&sockaddr_in6(Ipv6Addr::LOCALHOST, 80, 2, 28)).unwrap();
        assert_ne!(full, scoped);
    }

    #[test]
    fn java_v4_mapped_bind_is_an_ipv6_identity() {
        // Java binds an IPv4 address on a dual-stack socket as ::ffff:a.b.c.d with addrlen 28.
        let mapped = Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped();
        let java = Address::from_sockaddr(&sockaddr_in6(mapped, 9000, 0, 28)).unwrap();
        assert_eq!(java, Address::V6(mapped, 9000, 0));
        let v4 = Address::from_sockaddr(&sockaddr_in([127, 0, 0, 1], 9000, 16)).unwrap();
        assert_ne!(java, v4, "an AF_INET6 socket is not the AF_INET one");
    }

    #[test]
    fn wildcards_of_each_family_differ() {
        let any4 = Address::from_sockaddr(&sockaddr_in([0; 4], 80, 16)).unwrap();
        let any6 = Address::from_sockaddr(&sockaddr_in6(Ipv6Addr::UNSPECIFIED, 80, 0, 28)).unwrap();
        assert_ne!(any4, any6);
    }

    #[test]
    fn port_zero_is_ephemeral() {
        assert!(
            Address::from_sockaddr(&sockaddr_in([0; 4], 0, 16))
                .unwrap()
                .is_ephemeral()
        );
        assert!(!Address::UnixPath(b"/x".to_vec()).is_ephemeral());
    }

    #[test]
    fn unix_path_strips_trailing_nuls() {
        let exact = Address::from_sockaddr(&sockaddr_un(b"/run/app.sock", 0)).unwrap();
        let padded = Address::from_sockaddr(&sockaddr_un(b"/run/app.sock", 20)).unwrap();
        assert_eq!(exact, Address::UnixPath(b"/run/app.sock".to_vec()));
        assert_eq!(exact, padded);
    }

    #[test]
    fn unix_abstract_and_unnamed() {
        let abs = Address::from_sockaddr(&sockaddr_un(b"\0svc", 0)).unwrap();
        assert_eq!(abs, Address::UnixAbstract(b"svc".to_vec()));
        assert_eq!(abs.to_string(), "@svc");
        assert_eq!(Address::from_sockaddr(&sockaddr_un(b"", 0)), None);
        assert_eq!(Address::from_sockaddr(&sockaddr_un(b"\0", 0)), None);
    }

    #[test]
    fn is_tracked_agrees_with_from_sockaddr() {
        let cases = [
            sockaddr_in([127, 0, 0, 1], 80, 16),
            sockaddr_in([127, 0, 0, 1], 80, 16)[..6].to_vec(),
            sockaddr_in6(Ipv6Addr::LOCALHOST, 80, 0, 28),
            sockaddr_in6(Ipv6Addr::LOCALHOST, 80, 0, 28)[..20].to_vec(),
            sockaddr_un(b"/run/x", 0),
            sockaddr_un(b"\0name", 0),
            sockaddr_un(b"\0", 0),
            sockaddr_un(b"", 0),
            vec![],
        ];
        for raw in cases {
            assert_eq!(
                Address::is_tracked(&raw),
                Address::from_sockaddr(&raw).is_some(),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn truncated_and_foreign_families_are_untracked() {
        assert_eq!(Address::from_sockaddr(&[]), None);
        assert_eq!(
            Address::from_sockaddr(&sockaddr_in([1, 2, 3, 4], 5, 16)[..6]),
            None
        );
        let mut netlink = vec![0u8; 12];
        netlink[..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
        assert_eq!(Address::from_sockaddr(&netlink), None);
    }

    #[test]
    fn identity_round_trip() {
        let cases = [
            SocketIdentity {
                kind: SockKind::Stream,
                address: Address::V4(Ipv4Addr::new(10, 0, 0, 1), 443),
                v6only: false,
                reuseport: true,
            },
            SocketIdentity {
                kind: SockKind::Datagram,
                address: Address::V6(Ipv6Addr::UNSPECIFIED, 53, 3),
                v6only: true,
                reuseport: false,
            },
            SocketIdentity {
                kind: SockKind::SeqPacket,
                address: Address::UnixPath(b"/tmp/a/b c.sock".to_vec()),
                v6only: false,
                reuseport: false,
            },
            SocketIdentity {
                kind: SockKind::Stream,
                address: Address::UnixAbstract(b"x/y\0z".to_vec()),
                v6only: true,
                reuseport: true,
            },
        ];
        for identity in cases {
            let text = identity.encode();
            assert!(!text.contains(';') && !text.contains(','), "{text}");
            assert_eq!(text.parse::<SocketIdentity>().unwrap(), identity);
        }
    }

    #[test]
    fn identity_rejects_garbage() {
        for text in [
            "",
            "stream",
            "stream/in4/1.2.3.4/80",
            "stream/in4/1.2.3.4/99999/-",
            "raw/in4/1.2.3.4/80/-",
            "stream/path/zz/-",
            "stream/in4/1.2.3.4/80/maybe",
        ] {
            assert!(text.parse::<SocketIdentity>().is_err(), "{text}");
        }
    }

    #[test]
    fn display_for_humans() {
        let identity = SocketIdentity {
            kind: SockKind::Datagram,
            address: Address::V6(Ipv6Addr::LOCALHOST, 53, 0),
            v6only: true,
            reuseport: false,
        };
        assert_eq!(identity.to_string(), "udp [::1]:53 v6only");
    }
}
