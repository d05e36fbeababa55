"""Run one stage with some of its functions timed, for scripts/profile_stages.py:

    python -m scripts.benchlib.stage_profile OUT.json MODULE:QUALNAME[,...] -- PYTHON -m flirstream STAGE ...

SIGUSR1 starts the measured window (the counts start from zero), SIGUSR2 ends it and writes OUT:
{"argv", "thread_cpu_ns" (the main thread's CPU time in the window), "functions": {name: {"ns",
"calls"}}}.

Each named function (e.g. `capture.vospi:FrameAssembler.feed`) is wrapped before the stage starts,
to add up the CPU time of the thread that calls it (time.thread_time_ns) and its calls. What counts
is what the stage really pays per frame: sleeping does not count, nor do other threads or processes
that preempt it, but the cost of caches that a frame period's sleep left cold does. py-spy samples
wall time and puts a preempted thread's time on whatever it was doing (see docs/PERFORMANCE.md).
Times are inclusive: a timed function that calls another timed function counts that one's time too.
The signal handlers run on the main thread, where every stage does its per-frame work.
"""
from __future__ import annotations

import importlib
import inspect
import json
import signal
import sys
import time
from typing import Any, Callable


def timed(function: Callable, into: dict) -> Callable:
    """`function`, adding its calling thread's CPU time and calls to `into` ({"ns", "calls"})."""
    clock = time.thread_time_ns

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return function(*args, **kwargs)
        finally:
            into["ns"] += clock() - start
            into["calls"] += 1

    wrapper.__wrapped__ = function
    return wrapper


def install(names: list[str]) -> dict[str, dict]:
    """Wrap each MODULE:QUALNAME in place (ValueError naming one that does not exist)."""
    found: dict[str, dict] = {}
    for name in names:
        module_name, _, qualname = name.partition(":")
        try:
            owner: Any = importlib.import_module(module_name)
            *path, attribute = qualname.split(".")
            for part in path:
                owner = getattr(owner, part)
            function = getattr(owner, attribute)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"cannot time {name!r}: {exc}") from None
        found[name] = {"ns": 0, "calls": 0}
        kind = type(inspect.getattr_static(owner, attribute))
        if kind in (staticmethod, classmethod):  # wrapped as what it was, or self goes astray
            setattr(owner, attribute, kind(timed(function.__func__ if kind is classmethod
                                                 else function, found[name])))
        else:
            setattr(owner, attribute, timed(function, found[name]))
    return found


class Window:
    """The measured window: start() zeroes the counts, end() writes them with the thread's CPU."""

    def __init__(self, out: str, argv: list[str], functions: dict[str, dict]):
        self.out, self.argv, self.functions = out, argv, functions
        self.started_ns = time.thread_time_ns()

    def start(self, *_: Any) -> None:
        for counts in self.functions.values():
            counts["ns"] = counts["calls"] = 0
        self.started_ns = time.thread_time_ns()

    def end(self, *_: Any) -> None:
        used = time.thread_time_ns() - self.started_ns
        with open(self.out, "w") as f:
            json.dump({"argv": self.argv, "thread_cpu_ns": used, "functions": self.functions}, f)


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") != 2 or argv[4:6] != ["-m", "flirstream"]:
        print("usage: python -m scripts.benchlib.stage_profile OUT.json NAMES -- PYTHON -m "
              "flirstream STAGE ...", file=sys.stderr)
        return 2
    out, names, stage_argv = argv[0], argv[1], argv[6:]
    try:
        window = Window(out, stage_argv, install([n for n in names.split(",") if n]))
    except ValueError as exc:
        print(f"stage_profile: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGUSR1, window.start)
    signal.signal(signal.SIGUSR2, window.end)
    from flirstream.cli import main as stage_main  # (after install: it imports the stage)
    return stage_main(stage_argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
