"""`python -m capture`: the same as `flir-stream capture`."""
from flirstream.cli import stage_main

stage_main("capture")
