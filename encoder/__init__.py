"""The encoder stage: raw Lepton frames -> AGC -> palette -> scaled, oriented JPEG with temperatures.

render.Renderer is the core (no sockets; also used by tests and scripts/bench_encoder.py), agc and
palettes its steps, control the settings/viewers logic, app the process around them.
"""
