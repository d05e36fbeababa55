"""What every flir-stream stage shares: the server.conf loader, the wire format, the CLI."""
__version__ = "0.1.0"
