"""The server stage: the encoder's frames to browsers (websocket, MJPEG, snapshots), /healthz, /metrics.

app.py runs it; protocol.py is the browser protocol on /ws; docs/SERVER.md lists the endpoints.
"""
