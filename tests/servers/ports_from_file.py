#!/usr/bin/env python3
"""Thread per connection on every port its configuration names: a server whose config changes.

--ports-file names a file read once at start-up, like the version file: the TCP ports to listen
on, separated by commas or whitespace. Each listener gets a thread blocked in accept(); each
client gets a thread of its own. Replies carry `port=<the port the client reached>`.
"""

import dataclasses
import re
import threading

import common


def read_ports(path: str) -> list[int]:
    with open(path, encoding="utf-8") as f:
        words = re.split(r"[,\s]+", f.read().strip())
    return [int(word) for word in words if word]


def accept_loop(listener, config: common.Config) -> None:
    while True:
        conn = common.accept(listener)
        if conn is not None:
            threading.Thread(target=common.serve_blocking, args=(conn, config), daemon=True).start()


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--ports-file", required=True, help="the ports to listen on")
    config, args = common.parse_config(parser, port_required=False)
    ports = read_ports(args.ports_file)
    if not ports:
        parser.error(f"no ports in {args.ports_file}")
    listeners = [common.tcp_listener(config.host, port) for port in ports]
    common.write_pid_file(config)
    common.log(f"listening on ports {ports}")
    threads = [
        threading.Thread(
            target=accept_loop,
            args=(listener, dataclasses.replace(config, reply_extra=f"port={port}")),
            daemon=True,
        )
        for listener, port in zip(listeners, ports, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
