"""Pieces shared by the test servers: command line, protocol, and socket helpers.

Every server here stands for an ordinary, unmodified program: nothing in it knows about huptime.
Each server file owns its concurrency style (how it waits for clients and events); this module
only holds what is the same for all of them.

Protocol, one request per connection, one line each way:

    GET\\n        ->  version=<version> pid=<pid>[ <extra>]\\n
    HOLD <ms>\\n  ->  (after <ms> milliseconds)
                     version=<version> pid=<pid>[ <extra>] body=<65536 x 'x'>\\n

The server closes the connection after the reply. The long body lets a client tell a reply cut
short from a complete one. <extra> is an optional `key=value` field (Config.reply_extra) that
some servers add to tell more about who answered, e.g. `listener=1`.
"""

import argparse
import errno
import heapq
import itertools
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import NamedTuple

HOLD_BODY_LEN = 65536
# A request line is short; anything longer is garbage, not a request still arriving.
MAX_REQUEST_LEN = 64
# How long a blocking-style server waits on one client's reads and writes before giving up on
# it, so a client that connects and stalls cannot wedge a single-threaded server forever.
CLIENT_TIMEOUT_S = 10
LISTEN_BACKLOG = 128

# accept() errors after which a server simply tries again. Linux reports pending network errors
# of the new connection from accept() (see accept(2)), and those belong here too.
_RETRY_ACCEPT = {
    errno.EINTR,
    errno.EAGAIN,
    errno.EWOULDBLOCK,
    errno.ECONNABORTED,
    errno.EPROTO,
    errno.ENETDOWN,
    errno.ENOPROTOOPT,
    errno.EHOSTDOWN,
    errno.ENONET,
    errno.EHOSTUNREACH,
    errno.EOPNOTSUPP,
    errno.ENETUNREACH,
}
# accept() errors caused by a shortage of resources: worth a pause before trying again.
_BACK_OFF_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_BACK_OFF_S = 0.05


@dataclass(frozen=True)
class Config:
    host: str
    port: int | None
    version: str
    workers: int
    pid_file: str | None
    # An extra `key=value` field for every reply, after the pid; empty for none.
    reply_extra: str = ""


def make_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, help="TCP port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--version-file",
        help="file whose stripped content is the version, read once at start-up",
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="pool size for pooled styles (default 4)"
    )
    parser.add_argument("--pid-file", help="write the main process's pid here at start-up")
    return parser


def parse_config(
    parser: argparse.ArgumentParser, *, port_required: bool = True
) -> tuple[Config, argparse.Namespace]:
    args = parser.parse_args()
    if port_required and args.port is None:
        parser.error("--port is required")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    version = "unversioned"
    if args.version_file is not None:
        with open(args.version_file, encoding="utf-8") as f:
            version = f.read().strip()
    config = Config(
        host=args.host,
        port=args.port,
        version=version,
        workers=args.workers,
        pid_file=args.pid_file,
    )
    return config, args


def write_pid_file(config: Config) -> None:
    """Write our pid the way daemons do; replaced atomically so a reader never sees half of it."""
    if config.pid_file is None:
        return
    tmp = f"{config.pid_file}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, config.pid_file)


def log(message: str) -> None:
    print(
        f"[{os.path.basename(sys.argv[0])} pid={os.getpid()}] {message}",
        file=sys.stderr,
        flush=True,
    )


# --- sockets ----------------------------------------------------------------------------------


def tcp_listener(
    host: str, port: int, *, reuseport: bool = False, blocking: bool = True
) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(blocking)
    return sock


def accept_error_is_transient(e: OSError) -> bool:
    """True when a server should just call accept() again after this error."""
    if e.errno in _RETRY_ACCEPT:
        return True
    if e.errno in _BACK_OFF_ACCEPT:
        log(f"accept: {e}; backing off")
        time.sleep(_BACK_OFF_S)
        return True
    return False


def accept(listener: socket.socket) -> socket.socket | None:
    """accept() that survives the errors a server must shrug off; None means "try again"."""
    try:
        conn, _ = listener.accept()
        return conn
    except OSError as e:
        if accept_error_is_transient(e):
            return None
        raise


# --- protocol ---------------------------------------------------------------------------------


class Request(NamedTuple):
    # None for GET; the delay in milliseconds for HOLD.
    hold_ms: int | None


class BadRequest(Exception):
    pass


def parse_request(line: bytes) -> Request:
    words = line.strip().split()
    if words == [b"GET"]:
        return Request(None)
    if len(words) == 2 and words[0] == b"HOLD" and words[1].isdigit():
        return Request(int(words[1]))
    raise BadRequest(f"bad request {line[:MAX_REQUEST_LEN]!r}")


def reply(config: Config, request: Request) -> bytes:
    # getpid() at reply time: in forking styles the reply comes from a child.
    head = f"version={config.version} pid={os.getpid()}"
    if config.reply_extra:
        head += f" {config.reply_extra}"
    if request.hold_ms is None:
        return f"{head}\n".encode()
    return f"{head} body=".encode() + b"x" * HOLD_BODY_LEN + b"\n"


class LineBuffer:
    """Collects bytes until a full request line arrived."""

    def __init__(self) -> None:
        self._data = b""

    def feed(self, data: bytes) -> Request | None:
        self._data += data
        line, newline, _ = self._data.partition(b"\n")
        if newline:
            return parse_request(line)
        if len(self._data) > MAX_REQUEST_LEN:
            raise BadRequest(f"request line longer than {MAX_REQUEST_LEN} bytes")
        return None


def read_request(conn: socket.socket) -> Request | None:
    """Read one request from a blocking connection; None if the client left without one."""
    buffer = LineBuffer()
    while True:
        data = conn.recv(MAX_REQUEST_LEN)
        if not data:
            return None
        request = buffer.feed(data)
        if request is not None:
            return request


def serve_blocking(conn: socket.socket, config: Config) -> bool:
    """Serve one connection start to end with blocking calls, then close it; True if the whole
    reply was sent.

    A client that disconnects early or misbehaves costs only its own connection.
    """
    with conn:
        try:
            # Kernel timeouts (not socket.settimeout(), which makes the descriptor non-blocking
            # and polls): the calls stay plain blocking recv() and send().
            timeout = struct.pack("ll", CLIENT_TIMEOUT_S, 0)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
            request = read_request(conn)
            if request is None:
                return False
            if request.hold_ms is not None:
                time.sleep(request.hold_ms / 1000)
            conn.sendall(reply(config, request))
            return True
        except BadRequest as e:
            log(str(e))
        except OSError:
            pass  # the client went away or stalled: nothing to answer
        return False


class Exchange:
    """One request/reply on a non-blocking connection, driven by an event loop.

    read() and write() go on until the socket would block, so they suit level- and
    edge-triggered loops alike.
    """

    READING, HOLDING, WRITING, DONE = range(4)

    def __init__(self, conn: socket.socket, config: Config) -> None:
        conn.setblocking(False)
        self.conn = conn
        self.state = Exchange.READING
        self.request: Request | None = None
        self._config = config
        self._buffer = LineBuffer()
        self._out = memoryview(b"")

    def fileno(self) -> int:
        return self.conn.fileno()

    def read(self) -> None:
        """Read what has arrived; moves on to HOLDING or WRITING once the request is complete."""
        try:
            while self.state == Exchange.READING:
                data = self.conn.recv(4096)
                if not data:
                    self.close()
                    return
                request = self._buffer.feed(data)
                if request is not None:
                    self.request = request
                    if request.hold_ms is None:
                        self.start_reply()
                    else:
                        self.state = Exchange.HOLDING
        except BlockingIOError:
            pass
        except BadRequest as e:
            log(str(e))
            self.close()
        except OSError:
            self.close()

    def start_reply(self) -> None:
        assert self.request is not None
        self._out = memoryview(reply(self._config, self.request))
        self.state = Exchange.WRITING
        self.write()

    def write(self) -> None:
        """Send what the socket takes; closes the connection once the reply is out."""
        try:
            while self._out:
                sent = self.conn.send(self._out)
                self._out = self._out[sent:]
        except BlockingIOError:
            return
        except OSError:
            pass  # the client went away: drop the rest
        self.close()

    def close(self) -> None:
        if self.state != Exchange.DONE:
            self.state = Exchange.DONE
            self.conn.close()


class Timers:
    """Deadlines for HOLD requests in an event loop that has no timers of its own."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Exchange]] = []
        self._order = itertools.count()

    def add(self, delay_ms: int, exchange: Exchange) -> None:
        heapq.heappush(
            self._heap, (time.monotonic() + delay_ms / 1000, next(self._order), exchange)
        )

    def timeout_s(self) -> float | None:
        """Seconds until the next deadline, or None when nothing waits."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - time.monotonic())

    def expired(self) -> list[Exchange]:
        now = time.monotonic()
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due
