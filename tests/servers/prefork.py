#!/usr/bin/env python3
"""Pre-forked worker processes: the master binds and listens, then forks N workers that each
block in accept() on the inherited socket. The master only waits for workers and replaces any
that die. SIGTERM to the master stops the workers too.
"""

import contextlib
import os
import signal
import time
import traceback

import common

# A worker that dies this soon after its start is failing, not unlucky: respawn it slowly.
QUICK_DEATH_S = 1.0
RESPAWN_PAUSE_S = 0.5


class Shutdown(Exception):
    pass


def on_sigterm(_signum, _frame) -> None:
    raise Shutdown


def run_worker(listener, config: common.Config) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        conn = common.accept(listener)
        if conn is not None:
            common.serve_blocking(conn, config)


def spawn_worker(listener, config: common.Config) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            run_worker(listener, config)
        except BaseException:
            traceback.print_exc()
        os._exit(1)  # a worker never returns into the master's code
    return pid


def main() -> None:
    config, _ = common.parse_config(common.make_parser(__doc__))
    listener = common.tcp_listener(config.host, config.port)
    common.write_pid_file(config)
    signal.signal(signal.SIGTERM, on_sigterm)

    started_at: dict[int, float] = {}
    try:
        for _ in range(config.workers):
            started_at[spawn_worker(listener, config)] = time.monotonic()
        while True:
            pid, status = os.wait()
            if pid not in started_at:
                continue  # not one of our workers
            lived = time.monotonic() - started_at.pop(pid)
            common.log(f"worker {pid} ended ({status:#x}) after {lived:.1f}s; starting another")
            if lived < QUICK_DEATH_S:
                time.sleep(RESPAWN_PAUSE_S)
            started_at[spawn_worker(listener, config)] = time.monotonic()
    except Shutdown:
        for pid in started_at:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in started_at:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
