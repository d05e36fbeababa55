"""`python -m server`: the same as `flir-stream server`."""
from flirstream.cli import stage_main

stage_main("server")
