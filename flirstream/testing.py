"""Helpers for the test suite and the benchmark / soak scripts: a whole pipeline on free loopback
ports. Not used by the stages themselves."""
from __future__ import annotations

import resource
import socket
from pathlib import Path
from typing import Any

import numpy as np

from .wire import KELVIN_AT_0C


_given: set[int] = set()  # ports this process handed out already


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback), and never one this process handed out
    before: the kernel may offer a just-closed port again, and two settings of one config (or two
    tests' servers) must not get the same one."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port


def write_config(directory: Path, extra: str = "", **sections: dict) -> Path:
    """A server.conf using free loopback ports everywhere and the simulated camera; `sections` add
    or replace keys, e.g. write_config(tmp_path, capture={"sensor": "lepton2"})."""
    values = {
        "endpoints": {"frames": f"tcp://127.0.0.1:{free_port()}",
                      "images": f"tcp://127.0.0.1:{free_port()}",
                      "control": f"tcp://127.0.0.1:{free_port()}",
                      "camera": f"tcp://127.0.0.1:{free_port()}"},
        "capture": {"source": "sim"},
        "state": {"dir": str(Path(directory) / "state")},  # never the user's own state files
        "encoder": {},
        "server": {"host": "127.0.0.1", "port": str(free_port())},
    }
    for name, keys in sections.items():
        values.setdefault(name, {}).update({k: str(v) for k, v in keys.items()})
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
                   for name, keys in values.items())
    path = Path(directory) / "server.conf"
    path.write_text(text + extra)
    return path


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (each client connection is one descriptor); children
    inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def tlinear_counts(celsius: Any, kelvin_per_count: float = 0.01) -> Any:
    """TLinear counts of temperatures in degrees C (wire.KELVIN_AT_0C): an int for a number,
    uint16 pixels for an array."""
    counts = np.rint((np.asarray(celsius, dtype=np.float64) + KELVIN_AT_0C) * (1 / kelvin_per_count))
    return int(counts) if counts.ndim == 0 else counts.astype(np.uint16)
