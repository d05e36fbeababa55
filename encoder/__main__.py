"""`python -m encoder`: the same as `flir-stream encoder`."""
from flirstream.cli import stage_main

stage_main("encoder")
