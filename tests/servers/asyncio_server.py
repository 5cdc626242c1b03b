#!/usr/bin/env python3
"""asyncio.start_server: coroutines on one event loop, HOLD waits with asyncio.sleep."""

import asyncio
import contextlib

import common


async def handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, config: common.Config
) -> None:
    try:
        line = await asyncio.wait_for(reader.readline(), common.CLIENT_TIMEOUT_S)
        if not line.endswith(b"\n"):
            return  # the client left without a full request
        request = common.parse_request(line)
        if request.hold_ms is not None:
            await asyncio.sleep(request.hold_ms / 1000)
        writer.write(common.reply(config, request))
        await writer.drain()
    except common.BadRequest as e:
        common.log(str(e))
    except (TimeoutError, OSError, asyncio.LimitOverrunError, ValueError):
        pass  # the client went away, stalled or sent garbage: nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def serve(config: common.Config) -> None:
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, config),
        config.host,
        config.port,
        reuse_address=True,
        backlog=common.LISTEN_BACKLOG,
        limit=common.MAX_REQUEST_LEN,
    )
    common.write_pid_file(config)
    async with server:
        await server.serve_forever()


def main() -> None:
    config, _ = common.parse_config(common.make_parser(__doc__))
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
