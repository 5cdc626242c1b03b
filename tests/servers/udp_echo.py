#!/usr/bin/env python3
"""UDP echo in the manner of the test protocol: one socket, one thread, blocking recvfrom().

A datagram `seq=<token>` is answered to its sender, from the same socket, with
`version=<version> pid=<pid> seq=<token>`. Anything else is logged and dropped.
"""

import os
import socket

import common

MAX_DATAGRAM = 512


def main() -> None:
    config, _ = common.parse_config(common.make_parser(__doc__))
    family, kind, proto, _, address = socket.getaddrinfo(
        config.host, config.port, type=socket.SOCK_DGRAM
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.bind(address)
    common.write_pid_file(config)
    while True:
        data, peer = sock.recvfrom(MAX_DATAGRAM)
        words = data.split()
        if len(words) != 1 or not words[0].startswith(b"seq="):
            common.log(f"bad datagram {data[:64]!r} from {peer}")
            continue
        head = f"version={config.version} pid={os.getpid()} ".encode()
        try:
            sock.sendto(head + words[0] + b"\n", peer)
        except OSError as e:
            common.log(f"sendto {peer}: {e}")


if __name__ == "__main__":
    main()
