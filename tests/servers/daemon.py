#!/usr/bin/env python3
"""A classic daemonizing server: it binds and listens, then forks; the parent exits 0 at once and
the child calls setsid(), leaves the start directory, points stdin and stdout at /dev/null, writes
its pid file and serves with a blocking accept loop. Stderr stays where it was, for the logs.

Before it detaches it prints `starting <version>` on stdout, where a foreground program would:
restarted by huptime from a daemon whose stdout is /dev/null, it must still print there, since a
restart gets descriptors 0, 1, 2 as they were at the first start.

With --bind-after-daemonizing it daemonizes first and binds afterwards, as daemons do that read
their configuration only once detached.

Paths given to it (--version-file, --pid-file) must be absolute: the daemon changes to "/".
"""

import os
import socket

import common


def daemonize() -> None:
    """Fork; the parent exits 0 and the child becomes a session leader without a terminal."""
    if os.fork() > 0:
        # The parent's job is done; no cleanup of the child's resources may run here.
        os._exit(0)
    os.setsid()
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)


def serve(listener: socket.socket, config: common.Config) -> None:
    while True:
        conn = common.accept(listener)
        if conn is not None:
            common.serve_blocking(conn, config)


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument(
        "--bind-after-daemonizing",
        action="store_true",
        help="daemonize first, then bind and listen",
    )
    config, args = common.parse_config(parser)
    print(f"starting {config.version}", flush=True)
    if args.bind_after_daemonizing:
        daemonize()
        listener = common.tcp_listener(config.host, config.port)
    else:
        listener = common.tcp_listener(config.host, config.port)
        daemonize()
    common.write_pid_file(config)
    common.log(f"daemon serving {config.version} on {config.host}:{config.port}")
    serve(listener, config)


if __name__ == "__main__":
    main()
