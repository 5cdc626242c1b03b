#!/usr/bin/env python3
"""Single-threaded edge-triggered epoll loop serving many clients at once.

Everything is non-blocking and registered once with EPOLLET: on each edge the loop drains the
accept queue or the connection until EAGAIN, as edge-triggered code must. HOLD deadlines become
the epoll_wait() timeout.
"""

import select

import common

EDGE_EVENTS = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET


def accept_all(listener):
    """Yield every waiting client: with EPOLLET no new edge comes for the ones left behind."""
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        except OSError as e:
            if common.accept_error_is_transient(e):
                continue
            raise
        yield conn


def main() -> None:
    config, _ = common.parse_config(common.make_parser(__doc__))
    listener = common.tcp_listener(config.host, config.port, blocking=False)
    common.write_pid_file(config)

    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN | select.EPOLLET)
    exchanges: dict[int, common.Exchange] = {}
    timers = common.Timers()

    def after_step(fd: int, exchange: common.Exchange) -> None:
        if exchange.state == common.Exchange.HOLDING:
            timers.add(exchange.request.hold_ms, exchange)
        elif exchange.state == common.Exchange.DONE:
            # Closing the socket took it out of the epoll set; a stale event for its number
            # finds no exchange below.
            del exchanges[fd]

    while True:
        timeout = timers.timeout_s()
        for fd, events in epoll.poll(-1 if timeout is None else timeout):
            if fd == listener.fileno():
                for conn in accept_all(listener):
                    exchanges[conn.fileno()] = common.Exchange(conn, config)
                    # Registering reports data that is already there, so no edge is missed.
                    epoll.register(conn.fileno(), EDGE_EVENTS)
                continue
            exchange = exchanges.get(fd)
            if exchange is None:
                continue
            if exchange.state == common.Exchange.READING and events & (
                select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
            ):
                exchange.read()
                after_step(fd, exchange)
            elif exchange.state == common.Exchange.WRITING and events & (
                select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
            ):
                exchange.write()
                after_step(fd, exchange)
        for due in timers.expired():
            fd = due.fileno()
            due.start_reply()
            after_step(fd, due)


if __name__ == "__main__":
    main()
