"""What the browser tests share: a page in real headless Chromium (fixture page; conftest has
browser), the stand-in encoder publishing made-up thermal frames (FramePublisher, fixture feed), a
stand-in capture of the same scene (camera, fixture pipeline), a real server started on a free
port, and waits on what the page shows."""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np
import pytest
import zmq

from conftest import write_config
from flirstream import config as configuration, links, wire
from flirstream.testing import StandInCapture, setting, tlinear_counts  # noqa: F401 (setting: for tests)
from flirstream.wire import KELVIN_AT_0C
from server_support import DEFAULT_SETTINGS, FakeEncoder

ROWS, COLS = 120, 160
SCALE = 4  # JPEG is 640x480, as the encoder's "auto" size makes it
BACKGROUND_C = 24.0
HOT_C = 45.0
HOT = (100, 20, 120, 40)  # x0, y0, x1, y1 (exclusive) of the hot square, raw pixels
BAR_C = 30.0
WAIT_MS = 15_000


def scene(seq: int) -> np.ndarray:
    """Raw pixels of frame `seq`: background, hot square, and a warm bar at a column that moves
    with seq."""
    pixels = np.full((ROWS, COLS), tlinear_counts(BACKGROUND_C), dtype=np.uint16)
    x0, y0, x1, y1 = HOT
    pixels[y0:y1, x0:x1] = tlinear_counts(HOT_C)
    bar = (seq * 7) % 60  # stays left of the hot square
    pixels[70:110, bar:bar + 6] = tlinear_counts(BAR_C)
    return pixels


def built_frame(seq: int, palette_name: str = "inferno", pixels=None) -> wire.Frame:
    """Frame `seq` of scene() (or of `pixels`) with its picture and measurement, as the encoder makes
    them (pack_raw of it is what capture sends)."""
    pixels = scene(seq) if pixels is None else pixels
    celsius = pixels * 0.01 - KELVIN_AT_0C
    lo, hi = float(celsius.min()), float(celsius.max())
    grey = np.clip((celsius - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    image = cv2.resize(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), (COLS * SCALE, ROWS * SCALE),
                       interpolation=cv2.INTER_NEAREST)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    min_y, min_x = np.unravel_index(np.argmin(celsius), celsius.shape)
    max_y, max_x = np.unravel_index(np.argmax(celsius), celsius.shape)
    stats = {"min": lo, "max": hi, "mean": float(celsius.mean()),
             "centre": float(celsius[ROWS // 2, COLS // 2]),
             "min_xy": [int(min_x), int(min_y)], "max_xy": [int(max_x), int(max_y)]}
    now = time.time()
    frame = wire.Frame(seq=seq, t=now, sensor="lepton3", pixels=pixels,
                       telemetry={"frame_counter": seq, "fpa_temp_c": 31.5, "ffc_state": "done"})
    frame.picture = wire.Picture(t_encoded=now, jpeg=jpeg.tobytes(), pixels=pixels,
                                 width=COLS * SCALE, height=ROWS * SCALE, palette=palette_name,
                                 agc="linear", unit="C", range=(lo, hi), stats=stats)
    # what the encoder measures of it, for every frame (not rotated: the same pixels and stats)
    frame.measurement = wire.Measurement(t_measured=now, unit="C", stats=stats)
    return frame


def camera(endpoint: str) -> StandInCapture:
    """Plays capture for a real encoder: scene() about 10 times a second, with built_frame's
    telemetry."""
    return StandInCapture(endpoint, scene, telemetry=lambda seq: {
        "frame_counter": seq, "fpa_temp_c": 31.5, "ffc_state": "done"})


@dataclass
class FramePublisher(FakeEncoder):
    """The stand-in encoder for a real server and the page: built frames about 10 a second (each
    frame's measurement, then its picture) and, once a second, the capture status it
    forwards and its own with its settings; no control socket."""

    control: Optional[str] = None
    fps: float = 10.0
    status_every: float = 1.0
    camera_detail: Optional[str] = None  # a sentence: the camera is offline, no frames are sent
    frames_paused: bool = False  # statuses say "streaming" but no frame comes (a stall)
    palette_name: str = "inferno"  # what the frames say they are coloured with
    scene: Callable[[int], np.ndarray] = scene  # seq -> raw pixels of that frame
    statuses: bool = True  # False: frames only, as just after a restart before any status

    def _publisher(self) -> zmq.Socket:
        return links.publisher(self._ctx, "images", self.images)

    def _status(self) -> None:
        if not self.statuses:
            return
        offline = self.camera_detail is not None
        self._pub.send_multipart(wire.pack_status(
            "capture", "offline" if offline else "streaming", self.camera_detail or "", t=time.time()))
        extra = {"settings": {**DEFAULT_SETTINGS, "palette": self.palette_name}} \
            if self.palette_name in configuration.PALETTES else {}
        self._pub.send_multipart(wire.pack_status(
            "encoder", "waiting" if offline else "encoding", "", t=time.time(), **extra))

    def _frames(self) -> None:
        if self.camera_detail is None and not self.frames_paused:
            self.seq += 1
            frame = built_frame(self.seq, self.palette_name, self.scene(self.seq))
            self._pub.send_multipart(wire.pack_thermal(frame), copy=False)
            self._pub.send_multipart(wire.pack_image(frame), copy=False)

    def camera_offline(self, detail: str) -> None:
        self.camera_detail = detail  # the thread reports it within a second

    def camera_online(self) -> None:
        self.camera_detail = None

    stop = FakeEncoder.close


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def feed(tmp_path):
    """(config path, server URL, publisher of encoder frames); the publisher stops after the test."""
    config = write_config(tmp_path)
    publisher = FramePublisher(setting(config, "endpoints", "images"))
    yield config, f"http://127.0.0.1:{setting(config, 'server', 'port')}/", publisher
    publisher.stop()


@pytest.fixture
def pipeline(tmp_path, stages):
    """A real encoder and server fed with built raw frames: (config path, server URL)."""
    config = write_config(tmp_path, encoder={"palette": "ironbow", "agc": "linear"})
    capture = camera(setting(config, "endpoints", "frames"))
    url = f"http://127.0.0.1:{setting(config, 'server', 'port')}/"
    stages("encoder", config)
    start_server(stages, config, url)
    yield config, url
    capture.stop()


def wait_for_server(stage, url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stage.proc.poll() is not None:
            raise AssertionError(f"server exited with {stage.proc.returncode}:\n{stage.log()}")
        try:
            with urllib.request.urlopen(url + "healthz", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (503 before the first frame is fine)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server did not answer within {timeout} s:\n{stage.log()}")


def start_server(stages, config, url):
    stage = stages("server", config)
    wait_for_server(stage, url)
    return stage


def wait_for_capture(page, state: str) -> None:
    """Until the page has been told capture's state (status messages come about once a second)."""
    page.wait_for_function(f"document.getElementById('stage').dataset.capture === '{state}'",
                           timeout=WAIT_MS)


def shown_seq(page) -> int:
    return int(page.eval_on_selector("#view", "e => e.dataset.seq || '-1'"))


def wait_for_frames(page, after: int = 0) -> int:
    page.wait_for_function(f"Number(document.getElementById('view').dataset.seq || -1) > {after}",
                           timeout=WAIT_MS)
    return shown_seq(page)


CANVAS_SUM = """() => {
  const c = document.getElementById('view');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let sum = 0, lit = 0;
  for (let i = 0; i < d.length; i += 4) { sum = (sum * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
                                          if (d[i] + d[i + 1] + d[i + 2] > 60) lit++; }
  return [sum, lit, c.width, c.height];
}"""


def client_point(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of raw pixel (x, y)'s centre on the canvas."""
    box = page.locator("#view").bounding_box()
    return (box["x"] + (x + 0.5) / COLS * box["width"], box["y"] + (y + 0.5) / ROWS * box["height"])


CANVAS_RGB = """([fx, fy]) => {
  const c = document.getElementById('view');
  const x = Math.floor(fx * c.width), y = Math.floor(fy * c.height);
  const d = c.getContext('2d').getImageData(x - 1, y - 1, 3, 3).data;
  const rgb = [0, 0, 0];
  for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) rgb[k] += d[i + k] / 9;
  return rgb;
}"""


def canvas_rgb(page, x: float, y: float, rows: int = ROWS, cols: int = COLS) -> list:
    """Mean colour on the canvas around raw pixel (x, y)'s centre."""
    return page.evaluate(CANVAS_RGB, [(x + 0.5) / cols, (y + 0.5) / rows])


COLORBAR_ENDS = """() => {
  const c = document.getElementById('colorbar');
  const d = c.getContext('2d').getImageData(0, 0, c.width, 1).data;
  const at = (x) => [d[4 * x], d[4 * x + 1], d[4 * x + 2]];
  return [at(0), at(c.width - 1)];
}"""


def colorbar_ends(page) -> list:
    """The colour bar's first and last colours, [[r, g, b], [r, g, b]]."""
    return page.evaluate(COLORBAR_ENDS)


def wait_for_palette(page, name: str) -> None:
    page.wait_for_function(f"document.getElementById('view').dataset.palette === '{name}'",
                           timeout=WAIT_MS)
    wait_for_frames(page, after=shown_seq(page) + 1)  # and a frame after it has been drawn
