#!/usr/bin/env python3
"""Fork per connection: the parent accepts, a child serves each client and exits.

The parent reaps its children from a SIGCHLD handler with waitpid(WNOHANG), the classic way.
"""

import os
import signal
import traceback

import common


def reap_children(_signum, _frame) -> None:
    # One SIGCHLD may stand for several exited children.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> None:
    config, _ = common.parse_config(common.make_parser(__doc__))
    listener = common.tcp_listener(config.host, config.port)
    common.write_pid_file(config)
    signal.signal(signal.SIGCHLD, reap_children)
    while True:
        conn = common.accept(listener)
        if conn is None:
            continue
        with conn:
            try:
                pid = os.fork()
            except OSError as e:
                common.log(f"fork: {e}")
                continue
            if pid == 0:
                status = 0
                try:
                    listener.close()
                    common.serve_blocking(conn, config)
                except BaseException:
                    traceback.print_exc()
                    status = 1
                # Never return into the parent's accept loop.
                os._exit(status)


if __name__ == "__main__":
    main()
