"""/api/camera: the camera's info and status (GET) and camera commands (POST), relayed to capture.

    GET  /api/camera                      -> 200 {"ok": true, "camera": {...}}
    POST /api/camera  {"op": "ffc"}       -> 200 {"ok": true, "camera": {...}}
         {"op": "gain", "mode": "low"}, {"op": "ffc_mode", "mode": "manual"},
         {"op": "emissivity", "emissivity": 0.95, "background_c": 22}, {"op": "reboot"}
         (flirstream/wire.py, "camera control"; Content-Type: application/json, which also keeps
         other web sites' pages from posting here: their request would need a CORS preflight)
Errors are {"ok": false, "error": "<a sentence>"}: 400 a bad request, 401 the viewing token, 403
the control token, 415 not JSON, 502 the camera refused, 503 camera control unavailable here or
capture not reachable. Viewing needs the viewing token like every request; commands also need
control_token when it is set (in the body's "token", as ?token= / basic auth, or the
X-Control-Token header), the rule of the websocket's "set".
"""
from __future__ import annotations

import json
import logging
from typing import Any, Optional

from flirstream import wire

from . import access
from .plumbing import Base
from .relay import ControlRelay, RelayError

log = logging.getLogger("http")

STATUS_OF_REASON = {"unavailable": 503, "bad_request": 400, "camera": 502}


async def ask(relay: Optional[ControlRelay], request: dict) -> tuple[int, dict]:
    """(HTTP status, reply body) of one checked request sent to capture."""
    if relay is None:
        return 503, {"ok": False, "error": "no camera control channel to capture"}
    try:
        reply = await relay.request(request)
    except RelayError as exc:
        return 503, {"ok": False, "error": f"camera control: {exc}"}
    if reply.get("ok") is True and isinstance(reply.get("camera"), dict):
        return 200, {"ok": True, "camera": reply["camera"]}
    reason = reply.get("reason")
    return STATUS_OF_REASON.get(reason, 502), {
        "ok": False, "error": str(reply.get("error") or "capture refused the request"),
        "reason": reason if isinstance(reason, str) else "camera"}


class CameraAPI(Base):
    def _answer(self, status: int, body: dict) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def get(self) -> None:
        status, body = await ask(self.ctx.camera_relay, wire.camera_request("camera"))
        if status == 200:
            self.ctx.hub.set_camera(body["camera"])
        self._answer(status, body)

    async def post(self) -> None:
        kind = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            self._answer(415, {"ok": False, "error": "send the command as application/json, e.g. "
                                                     '{"op": "ffc"}'})
            return
        try:  # the stages' bounded reader: "[" x 3,000 was a RecursionError (a 500) in json.loads
            message: Any = wire.load_json(self.request.body or b"null")
        except wire.WireError as exc:
            self._answer(400, {"ok": False, "error": f"the body is refused: {exc}"})
            return
        token = message.get("token") if isinstance(message, dict) else None
        if not access.control_allowed(self.ctx.server.control_token,
                                      token if isinstance(token, str) else None,
                                      self.presented_token(),
                                      self.request.headers.get("X-Control-Token")):
            self.ctx.metrics.reject("control_token")
            log.info("403 POST /api/camera from %s: no valid control token", self.request.remote_ip)
            self._answer(403, {"ok": False, "error": "camera commands need the control token"})
            return
        try:
            request = wire.check_camera_request(message)
        except wire.WireError as exc:
            self._answer(400, {"ok": False, "error": str(exc)})
            return
        status, body = await ask(self.ctx.camera_relay, request)
        if status == 200:
            log.info("camera %s by %s", request["op"], self.request.remote_ip)
            self.ctx.hub.set_camera(body["camera"])
        else:
            log.info("camera %s from %s not done: %s", request, self.request.remote_ip,
                     body["error"])
        self._answer(status, body)
