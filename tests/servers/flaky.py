#!/usr/bin/env python3
"""Thread per connection, like threaded.py, but a new version can be told to start badly.

--behaviour-file names a file read once at start-up, like the version file. Its stripped content
says how this start goes:

    good               serve normally (the version comes from --version-file)
    exit-before-bind   exit with status 3 at once, before binding anything
    exit-after-listen  bind and listen, then exit with status 4 before accepting a client
    segfault           bind, then die of SIGSEGV (no core file is written)
    hang               bind and listen, then sleep for ever without accepting
    slow               sleep SLOW_START_S before binding, then serve like good
    paused             bind and listen, then wait until --go-file exists (quietly: no output),
                       then serve like good

Only a start that serves (good, slow, paused) writes the pid file, so it names the process that
serves. Every start first appends `<pid> <behaviour> <version>` to --starts-file (if given), so a
test can find the processes of a generation that failed.
"""

import os
import resource
import signal
import threading
import time

import common

BEHAVIOURS = ("good", "exit-before-bind", "exit-after-listen", "segfault", "hang", "slow", "paused")
# How long a slow start takes before binding: long enough for a test to act meanwhile.
SLOW_START_S = 1.5
# How often a paused start looks for its go file.
GO_POLL_S = 0.01


def note_start(path: str | None, behaviour: str, version: str) -> None:
    if path is None:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {behaviour} {version}\n".encode())
    finally:
        os.close(fd)


def main() -> None:
    parser = common.make_parser(__doc__)
    parser.add_argument("--behaviour-file", required=True, help="how this start goes (see above)")
    parser.add_argument("--starts-file", help="append `<pid> <behaviour> <version>` here")
    parser.add_argument("--go-file", help="what a paused start waits for")
    config, args = common.parse_config(parser)
    with open(args.behaviour_file, encoding="utf-8") as f:
        behaviour = f.read().strip()
    if behaviour not in BEHAVIOURS:
        parser.error(f"unknown behaviour {behaviour!r} in {args.behaviour_file}")
    if behaviour == "paused" and args.go_file is None:
        parser.error("a paused start needs --go-file")
    note_start(args.starts_file, behaviour, config.version)

    if behaviour == "slow":
        common.log(f"slow: sleeping {SLOW_START_S} s before binding")
        time.sleep(SLOW_START_S)
    if behaviour == "exit-before-bind":
        common.log("exit-before-bind: exiting with status 3")
        raise SystemExit(3)
    listener = common.tcp_listener(config.host, config.port)
    if behaviour == "exit-after-listen":
        common.log("exit-after-listen: listening; exiting with status 4")
        raise SystemExit(4)
    if behaviour == "segfault":
        common.log("segfault: bound; killing myself with SIGSEGV")
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(10)  # not reached: SIGSEGV is deadly
        raise SystemExit("still alive after SIGSEGV")
    if behaviour == "hang":
        common.log("hang: listening; never accepting")
        while True:
            time.sleep(3600)
    if behaviour == "paused":
        while not os.path.exists(args.go_file):
            time.sleep(GO_POLL_S)

    common.write_pid_file(config)
    while True:
        conn = common.accept(listener)
        if conn is not None:
            threading.Thread(target=common.serve_blocking, args=(conn, config), daemon=True).start()


if __name__ == "__main__":
    main()
