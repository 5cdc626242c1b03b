#!/usr/bin/env python3
"""Single-threaded poll() loop serving many clients at once.

Level-triggered, with a non-blocking listening socket: one accept() per readiness report, and
EAGAIN (another process or thread took the client first) is simply ignored. HOLD deadlines
become the poll() timeout.
"""

import select

import common

IN = select.POLLIN
OUT = select.POLLOUT


def interest(exchange: common.Exchange) -> int:
    return {common.Exchange.READING: IN, common.Exchange.WRITING: OUT}.get(exchange.state, 0)


def main() -> None:
    config, _ = common.parse_config(common.make_parser(__doc__))
    listener = common.tcp_listener(config.host, config.port, blocking=False)
    common.write_pid_file(config)

    poller = select.poll()
    poller.register(listener, IN)
    exchanges: dict[int, common.Exchange] = {}
    events_of: dict[int, int] = {}
    timers = common.Timers()

    def update(fd: int, exchange: common.Exchange) -> None:
        """Keep the poll set in step with what the exchange waits for.

        A held exchange leaves the set: poll() reports hang-ups even with no events asked for,
        and a client that hangs up during HOLD would make the loop spin until the deadline.
        """
        wanted = interest(exchange)
        current = events_of[fd]
        if wanted != current:
            if current == 0:
                poller.register(fd, wanted)
            elif wanted == 0:
                poller.unregister(fd)
            else:
                poller.modify(fd, wanted)
            events_of[fd] = wanted
        if exchange.state == common.Exchange.DONE:
            del exchanges[fd], events_of[fd]

    while True:
        timeout = timers.timeout_s()
        for fd, _ in poller.poll(None if timeout is None else timeout * 1000):
            if fd == listener.fileno():
                conn = common.accept(listener)
                if conn is not None:
                    exchange = common.Exchange(conn, config)
                    exchanges[conn.fileno()] = exchange
                    events_of[conn.fileno()] = IN
                    poller.register(conn, IN)
                continue
            exchange = exchanges[fd]
            if exchange.state == common.Exchange.READING:
                exchange.read()
                if exchange.state == common.Exchange.HOLDING:
                    timers.add(exchange.request.hold_ms, exchange)
            elif exchange.state == common.Exchange.WRITING:
                exchange.write()
            update(fd, exchange)
        for due in timers.expired():
            fd = due.fileno()
            due.start_reply()
            update(fd, due)


if __name__ == "__main__":
    main()
