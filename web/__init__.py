"""The browser viewer: static HTML/JS/CSS served by the server stage (no build step, no CDN)."""
from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
