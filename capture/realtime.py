"""How the capture process is scheduled: real-time priority, nice, CPU affinity, no GC pauses.

The Lepton has no flow control: a Lepton 3 segment not read within its ~9.4 ms (1/106 s) is
lost, and a longer stall loses sync (185 ms of nothing to recover). A busy machine easily
keeps a normally scheduled reader off the CPU for that long; SCHED_FIFO makes the reader run as
soon as it is ready. Each setting is applied where the system permits it; what was refused
(EPERM: no CAP_SYS_NICE / rtprio limit) is said in the one line apply() returns, and capture
goes on with normal scheduling.

Python's cyclic GC can stop the loop for milliseconds when it walks every object (a full
collection): tune_gc() is flirstream.startup's freeze, as every stage does it, and says so.
"""
from __future__ import annotations

import errno
import os
from typing import Optional, Sequence

from flirstream.startup import GC_THRESHOLD0, freeze_startup

DEFAULT_PRIORITY = 10  # above normal tasks, below the kernel's IRQ threads (50) that move the bytes


def _refused(exc: OSError) -> str:
    if exc.errno in (errno.EPERM, errno.EACCES):  # (setpriority says EACCES)
        return f"not permitted ({errno.errorcode[exc.errno]})"
    return exc.strerror or str(exc)


def tune_gc() -> str:
    """Collect once, freeze what start-up made, make young collections rarer: one line saying so."""
    return f"gc frozen ({freeze_startup()} objects), threshold {GC_THRESHOLD0}"


def apply(policy: str = "off", priority: int = DEFAULT_PRIORITY, nice: int = 0,
          cpus: Optional[Sequence[int]] = None) -> str:
    """Apply the settings to the calling thread (and the threads it starts later); returns
    one line saying what it got."""
    got: list[str] = []
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
        except OSError as exc:
            got.append(f"CPU {','.join(map(str, cpus))} refused: {_refused(exc)}")
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as exc:
            got.append(f"nice {nice} refused: {_refused(exc)}")
    if policy == "fifo":
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        except OSError as exc:
            got.append(f"SCHED_FIFO {priority} refused: {_refused(exc)} (needs root, "
                       f"CAP_SYS_NICE or an rtprio limit, e.g. LimitRTPRIO= in the service)")
    got.insert(0, describe())
    return "; ".join(got)


def describe() -> str:
    """The calling thread's scheduling as it is now."""
    policy = os.sched_getscheduler(0)
    if policy == os.SCHED_FIFO:
        what = f"SCHED_FIFO priority {os.sched_getparam(0).sched_priority}"
    elif policy == getattr(os, "SCHED_RR", -1):
        what = f"SCHED_RR priority {os.sched_getparam(0).sched_priority}"
    else:
        what = f"normal scheduling, nice {os.getpriority(os.PRIO_PROCESS, 0)}"
    cpus = sorted(os.sched_getaffinity(0))
    return f"{what}, CPU {','.join(map(str, cpus))}"
