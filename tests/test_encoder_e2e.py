"""Real `flir-stream capture` (simulated Lepton) -> real `flir-stream encoder` -> a test subscriber."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import zmq

from conftest import write_config
from flirstream import config, wire

WAIT_S = 20.0


def collect(endpoint: str, count: int, timeout: float = WAIT_S) -> tuple[list, list]:
    """Up to `count` images (and the statuses that came meanwhile) from the images endpoint."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, wire.IMAGE_TOPIC)
    sub.setsockopt(zmq.SUBSCRIBE, wire.STATUS_TOPIC)
    sub.connect(endpoint)
    images, statuses = [], []
    deadline = time.monotonic() + timeout
    try:
        while len(images) < count and time.monotonic() < deadline:
            if not sub.poll(200):
                continue
            parts = sub.recv_multipart()
            if wire.topic_of(parts) == wire.IMAGE_TOPIC:
                images.append(wire.unpack_image(parts))
            else:
                statuses.append(wire.unpack_status(parts))
    finally:
        ctx.destroy(0)
    return images, statuses


@pytest.mark.parametrize("sensor,shape,size", [("lepton3", (120, 160), (640, 480)),
                                               ("lepton2", (60, 80), (320, 240))])
def test_simulated_capture_through_encoder(tmp_path, stages, sensor, shape, size):
    path = write_config(tmp_path, capture={"source": "sim", "sensor": sensor},
                        encoder={"palette": "inferno"})
    cfg = config.load(path)
    stages("capture", path)
    stages("encoder", path)
    images, statuses = collect(cfg.endpoints.images, 12)
    assert len(images) == 12, "too few images from capture -> encoder"
    seqs = [image.seq for image in images]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for image in images:
        picture = cv2.imdecode(np.frombuffer(image.picture.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape == (size[1], size[0], 3)
        assert (image.picture.width, image.picture.height) == size and image.picture.pixels.shape == shape
        assert image.sensor == sensor and image.picture.palette == "inferno" and image.picture.unit == "C"
        s = image.picture.stats
        assert -40 < s["min"] <= s["mean"] <= s["max"] < 200  # a plausible room-temperature scene
        assert image.picture.pixels[s["max_xy"][1], s["max_xy"][0]] == image.picture.pixels.max()
        assert image.picture.range[0] < image.picture.range[1]
    # the scene moves: not every frame is the same picture
    assert len({image.picture.pixels.tobytes() for image in images}) > 1
    stages_seen = {status["stage"] for status in statuses}
    if "capture" not in stages_seen or "encoder" not in stages_seen:  # both once a second
        more = collect(cfg.endpoints.images, 40, timeout=2.5)[1]
        stages_seen |= {status["stage"] for status in more}
    assert stages_seen == {"capture", "encoder"}
