"""flirstream/links.py on real ZeroMQ sockets: links.publish sends a message's parts as one
message, as send_multipart does."""
from __future__ import annotations

import numpy as np
import zmq

from flirstream import links, wire
from flirstream.testing import free_port
from server_support import thermal_frame

TIMEOUT_MS = 10_000


def test_publish_delivers_every_part_as_one_message():
    ctx = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = ctx.socket(zmq.XPUB)  # an XPUB: the test sees the subscription arrive before it sends
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    sub = links.subscriber(ctx, endpoint, wire.THERMAL_TOPIC)
    try:
        assert pub.poll(TIMEOUT_MS), "no subscription arrived"
        assert pub.recv() == b"\x01" + wire.THERMAL_TOPIC
        frame = thermal_frame(7)
        for copy in (True, False):
            links.publish(pub, wire.pack_thermal(frame), copy=copy)
            assert sub.poll(TIMEOUT_MS), "the message did not arrive"
            got = wire.unpack_thermal(sub.recv_multipart())
            assert got.seq == 7 and np.array_equal(got.pixels, frame.pixels)
            assert not sub.poll(0), "one message, not one per part"
        links.publish(pub, [wire.THERMAL_TOPIC])  # one part
        assert sub.poll(TIMEOUT_MS) and sub.recv_multipart() == [wire.THERMAL_TOPIC]
    finally:
        sub.close(0)
        pub.close(0)
        ctx.term()
