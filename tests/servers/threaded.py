#!/usr/bin/env python3
"""Thread per connection: the main thread accepts, each client gets a thread of its own."""

import threading

import common


def main() -> None:
    config, _ = common.parse_config(common.make_parser(__doc__))
    listener = common.tcp_listener(config.host, config.port)
    common.write_pid_file(config)
    while True:
        conn = common.accept(listener)
        if conn is not None:
            threading.Thread(target=common.serve_blocking, args=(conn, config), daemon=True).start()


if __name__ == "__main__":
    main()
