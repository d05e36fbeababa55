"""The load generator's websocket client (scripts/loadgen.py) reads every frame right.

bench.py's fan-out and latency figures rest on it counting frames and reading their headers exactly,
so it is checked here against a real loopback server that sends a known byte stream - text, binary
messages of every length encoding (7-bit, 16-bit, 64-bit), a ping - cut into random pieces.
"""
from __future__ import annotations

import asyncio
import json
import random
import struct

from scripts import loadgen


def ws_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def frame_message(seq: int, t: float, jpeg_len: int) -> bytes:
    header = json.dumps({"seq": seq, "t": t, "t_encoded": t + 0.001, "t_sent": t + 0.002,
                         "jpeg_bytes": jpeg_len, "raw_bytes": 0}).encode()
    return struct.pack(">I", len(header)) + header + bytes(random.getrandbits(8) for _ in range(16)) \
        * (jpeg_len // 16) + b"\xff" * (jpeg_len % 16)


def test_client_parses_a_chopped_stream(tmp_path):
    random.seed(8)
    sizes = [0, 3, 100, 117, 118, 200, 5000, 65531, 65532, 70000, 150_000, 17_000] * 3
    stream = ws_frame(1, b'{"type":"hello"}')
    for i, size in enumerate(sizes):
        stream += ws_frame(2, frame_message(i, 1000.0 + i, size))
        if i == 7:
            stream += ws_frame(9, b"are you there")
    stream += ws_frame(1, b'{"type":"status"}')
    got_from_client: list[bytes] = []
    done: list[asyncio.Event] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
        pos = 0
        while pos < len(stream):
            n = random.choice((1, 2, 3, 7, 100, 1500, 4096, 65536, 200_000))
            writer.write(stream[pos:pos + n])
            pos += n
            await writer.drain()
            await asyncio.sleep(0)
        try:
            got_from_client.append(await asyncio.wait_for(reader.read(100), 5))
            await asyncio.wait_for(done[0].wait(), 5)  # close only after the client has checked
        except asyncio.TimeoutError:
            pass
        writer.close()

    async def main() -> tuple:
        done.append(asyncio.Event())
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        window = loadgen.Window()
        window.reset(1005.0, 1015.0)
        client = loadgen.Client(loadgen.handshake_request("127.0.0.1", port, "/ws"), window)
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: client, "127.0.0.1", port)
        for _ in range(500):  # bounded: 5 s at most
            if client.frames_total >= len(sizes) and client.texts >= 2:
                break
            await asyncio.sleep(0.01)
        error = client.error
        done[0].set()
        client.close()
        server.close()
        await server.wait_closed()
        return client, window, error

    client, window, error = asyncio.run(main())
    assert error is None
    assert client.frames_total == len(sizes)
    assert client.texts == 2
    assert client.in_window == 10  # t = 1005 ... 1014
    assert len(window.latency) == 10 and len(window.net) == 10
    assert all(abs(x - 1.0) < 1e-6 for x in window.encode)  # t_encoded - t = 1 ms
    assert all(abs(x - 1.0) < 1e-6 for x in window.server)  # t_sent - t_encoded = 1 ms
    # the ping was answered with a masked pong carrying the same payload
    assert got_from_client and got_from_client[0].startswith(
        bytes((0x8A, 0x80 | len(b"are you there"))) + b"\0\0\0\0" + b"are you there")
