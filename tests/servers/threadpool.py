#!/usr/bin/env python3
"""A fixed pool of threads, all blocking in accept() on the same listening socket."""

import threading

import common


def worker(listener, config: common.Config) -> None:
    while True:
        conn = common.accept(listener)
        if conn is not None:
            common.serve_blocking(conn, config)


def main() -> None:
    config, _ = common.parse_config(common.make_parser(__doc__))
    listener = common.tcp_listener(config.host, config.port)
    common.write_pid_file(config)
    threads = [
        threading.Thread(target=worker, args=(listener, config), name=f"worker-{i}", daemon=True)
        for i in range(config.workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
