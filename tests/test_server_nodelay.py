"""`serve` sends each response at once: TCP_NODELAY on every accepted connection, even though
the socket it listens on is bound with protocol 0 (on which asyncio leaves Nagle's algorithm on,
and a response's body would wait for the client's delayed acknowledgement of its headers)."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from typing import Any

import pytest

from leadscore.api.server import Protocol, _no_delay
from leadscore.cli.service import _bind

LOOPS = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])


def _accepted_nodelay(fix: bool) -> tuple[int, int]:
    """TCP_NODELAY of a connection accepted on a socket bound as ``serve`` binds it: as asyncio
    leaves it, and after ``_no_delay`` when ``fix``."""
    sock = _bind("127.0.0.1", 0)
    seen: dict[str, int] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        class Accepting(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                raw = transport.get_extra_info("socket")
                seen["asyncio"] = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                if fix:
                    _no_delay(transport)
                seen["now"] = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                transport.close()
                done.set_result(None)

        server = await loop.create_server(Accepting, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        await asyncio.wait_for(done, 10)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    return seen["asyncio"], seen["now"]


def test_asyncio_leaves_nagle_on_for_a_socket_bound_with_protocol_0() -> None:
    assert _accepted_nodelay(fix=False) == (0, 0)  # why serve must set it itself


def test_serve_turns_nagle_off_on_each_connection() -> None:
    before, after = _accepted_nodelay(fix=True)
    assert before == 0 and after != 0


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_the_serve_protocol_turns_nagle_off_on_a_real_connection(loop_kind: str) -> None:
    """uvicorn with the service's protocol, on a socket bound as ``serve`` binds it, on each
    event loop ``serve`` may run on."""
    import uvicorn
    from uvicorn.server import ServerState

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never called: no request
        raise AssertionError(scope)

    config = uvicorn.Config(app, http=Protocol, log_level="warning", lifespan="off")
    config.load()
    state = ServerState()
    sock = _bind("127.0.0.1", 0)
    made: list[Protocol] = []

    def factory() -> Protocol:
        made.append(Protocol(config=config, server_state=state, app_state={}))
        return made[-1]

    async def main() -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        for _ in range(500):
            if made and made[0].transport is not None:
                break
            await asyncio.sleep(0.01)
        raw = made[0].transport.get_extra_info("socket")
        value = int(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()
        made[0].transport.close()
        server.close()
        await server.wait_closed()
        return value

    if loop_kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            assert runner.run(main()) != 0
    else:
        assert asyncio.run(main()) != 0
