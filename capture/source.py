"""The source contract the reader consumes: what every source of VoSPI bytes offers (capture/sources.py
and capture/spi.py implement it) and how it says it cannot deliver."""
from __future__ import annotations

from typing import Protocol

DEFAULT_SPI_DEVICE = "/dev/spidev0.0"


class SourceOffline(Exception):
    """The source cannot deliver bytes right now; str() says why (one line for people)."""


class Source(Protocol):
    name: str
    retry_delay: float

    def read(self) -> bytes:
        """Some bytes (may be empty), blocking at most about 0.1 s; raises SourceOffline."""

    def pause(self, seconds: float) -> None:
        """Stop reading for at least `seconds` (on SPI: chip select deasserted, to resync)."""

    def close(self) -> None:
        ...
