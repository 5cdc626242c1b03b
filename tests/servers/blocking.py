#!/usr/bin/env python3
"""Single-threaded server with a blocking accept loop: one client at a time.

With one listener it is the plainest server there is: accept, serve, repeat. With several
listeners (--ports, --reuseport-pair) it waits for any of them with select() and then serves the
ready one with the same blocking calls. --unix serves a Unix socket path instead of TCP.
"""

import contextlib
import os
import select
import socket

import common


def open_listeners(config: common.Config, args) -> list[socket.socket]:
    if args.unix is not None:
        # The common idiom: a stale socket file from an earlier run would make bind() fail.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.unix)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(args.unix)
        listener.listen(common.LISTEN_BACKLOG)
        return [listener]
    if args.ports is not None:
        return [common.tcp_listener(config.host, port) for port in args.ports]
    if args.reuseport_pair:
        return [common.tcp_listener(config.host, config.port, reuseport=True) for _ in range(2)]
    return [common.tcp_listener(config.host, config.port)]


def serve_one(listener: socket.socket, config: common.Config) -> None:
    while True:
        conn = common.accept(listener)
        if conn is not None:
            common.serve_blocking(conn, config)


def serve_many(listeners: list[socket.socket], config: common.Config) -> None:
    while True:
        ready, _, _ = select.select(listeners, [], [])
        for listener in ready:
            conn = common.accept(listener)
            if conn is not None:
                common.serve_blocking(conn, config)


def parse_ports(text: str) -> list[int]:
    return [int(port) for port in text.split(",")]


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument(
        "--ports", type=parse_ports, metavar="N,M", help="listen on several TCP ports"
    )
    parser.add_argument(
        "--reuseport-pair",
        action="store_true",
        help="open two SO_REUSEPORT listeners on --port",
    )
    parser.add_argument(
        "--unix", metavar="PATH", help="listen on this Unix socket path instead of TCP"
    )
    config, args = common.parse_config(parser, port_required=False)
    if sum(x is not None for x in (config.port, args.ports, args.unix)) != 1:
        parser.error("give exactly one of --port, --ports, --unix")
    if args.reuseport_pair and config.port is None:
        parser.error("--reuseport-pair needs --port")

    listeners = open_listeners(config, args)
    common.write_pid_file(config)
    if len(listeners) == 1:
        serve_one(listeners[0], config)
    else:
        serve_many(listeners, config)


if __name__ == "__main__":
    main()
