#!/usr/bin/env python3
"""Single-threaded server with a blocking accept loop: one client at a time.

With one listener it is the plainest server there is: accept, serve, repeat. With several
listeners (--ports, --reuseport-pair) it waits for any of them with select() and then serves the
ready one with the same blocking calls; its replies then carry `listener=<index>`, the index of
the listener that accepted the client, in the order the listeners were opened. --unix serves a
Unix socket path instead of TCP. --exit-after makes it a program that ends on its own.
"""

import contextlib
import dataclasses
import os
import select
import socket
import sys

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


class Quota:
    """Counts the replies sent; ends the program once --exit-after of them went out."""

    def __init__(self, limit: int | None) -> None:
        self._left = limit

    def served(self, replied: bool) -> None:
        if self._left is None or not replied:
            return
        self._left -= 1
        if self._left == 0:
            common.log("served the requests --exit-after asked for; exiting")
            sys.exit(0)


def serve_one(listener: socket.socket, config: common.Config, quota: Quota) -> None:
    while True:
        conn = common.accept(listener)
        if conn is not None:
            quota.served(common.serve_blocking(conn, config))


def serve_many(listeners: list[socket.socket], configs: list[common.Config], quota: Quota) -> None:
    config_of = dict(zip(listeners, configs, strict=True))
    while True:
        ready, _, _ = select.select(listeners, [], [])
        for listener in ready:
            conn = common.accept(listener)
            if conn is not None:
                quota.served(common.serve_blocking(conn, config_of[listener]))


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
    parser.add_argument(
        "--exit-after",
        type=int,
        metavar="N",
        help="exit with status 0 (sys.exit) once N replies were sent",
    )
    config, args = common.parse_config(parser, port_required=False)
    if sum(x is not None for x in (config.port, args.ports, args.unix)) != 1:
        parser.error("give exactly one of --port, --ports, --unix")
    if args.reuseport_pair and config.port is None:
        parser.error("--reuseport-pair needs --port")
    if args.exit_after is not None and args.exit_after < 1:
        parser.error("--exit-after must be at least 1")

    listeners = open_listeners(config, args)
    common.write_pid_file(config)
    quota = Quota(args.exit_after)
    if len(listeners) == 1:
        serve_one(listeners[0], config, quota)
    else:
        configs = [
            dataclasses.replace(config, reply_extra=f"listener={index}")
            for index in range(len(listeners))
        ]
        serve_many(listeners, configs, quota)


if __name__ == "__main__":
    main()
