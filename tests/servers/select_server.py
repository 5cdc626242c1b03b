#!/usr/bin/env python3
"""Single-threaded select() loop serving many clients at once.

The listening socket stays blocking (select() says when accept() will not wait); connections
are non-blocking. HOLD deadlines become the select() timeout.
"""

import select

import common


def main() -> None:
    config, _ = common.parse_config(common.make_parser(__doc__))
    listener = common.tcp_listener(config.host, config.port)
    common.write_pid_file(config)

    exchanges: set[common.Exchange] = set()
    timers = common.Timers()
    while True:
        readers = [listener] + [x for x in exchanges if x.state == common.Exchange.READING]
        writers = [x for x in exchanges if x.state == common.Exchange.WRITING]
        readable, writable, _ = select.select(readers, writers, [], timers.timeout_s())

        for ready in readable:
            if ready is listener:
                conn = common.accept(listener)
                if conn is not None:
                    exchanges.add(common.Exchange(conn, config))
                continue
            ready.read()
            if ready.state == common.Exchange.HOLDING:
                timers.add(ready.request.hold_ms, ready)
        for ready in writable:
            ready.write()
        for due in timers.expired():
            if due.state == common.Exchange.HOLDING:
                due.start_reply()

        exchanges = {x for x in exchanges if x.state != common.Exchange.DONE}


if __name__ == "__main__":
    main()
