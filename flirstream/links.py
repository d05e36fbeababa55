"""ZeroMQ sockets between stages, set up so that every stage keeps only the newest frame.

Publishers bind, subscribers connect, so any stage can start first or restart alone. High-water marks
are small: a stalled subscriber makes ZeroMQ drop frames for it instead of queueing them, and
`drain` / `recv_latest` drain whatever did queue so the caller always works on the newest message.

CURVE: with [endpoints] curve_key set (the stage's CLI calls configure()), every link (frames, images,
control, camera) uses ZeroMQ's CURVE encryption: the binding socket is the CURVE server (curve_server(), also
called by the encoder for its XPUB and ROUTER), the connecting one a client (curve_client(), also
called by the server's control relay), and all use the one key pair of the installation from the
secret key file. A subscriber without that file cannot connect (it would
need the installation's public key, which is kept only in that file) nor read the traffic.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import zmq

from flirstream.wire import STATUS_TOPIC

FRAME_HWM = 2  # frames a publisher queues per subscriber (messages: one per frame and topic)
# Messages a subscriber lets ZeroMQ queue. Not 2: at 2, a moment of lag (hundreds of viewers to
# write to, a busy CPU) makes ZeroMQ stop reading the TCP connection; the frames then wait in the
# kernel's buffers - megabytes, seconds of video - where draining cannot skip them. With room for a
# few dozen, ZeroMQ's I/O thread keeps the kernel buffers empty and `drain` throws the old frames
# away (at most ~RECEIVE_HWM frames of memory, ~2 MB).
RECEIVE_HWM = 32
# The kernel's send buffer per subscriber connection: a few frames. Unbounded, it would hold seconds
# of frames for a subscriber that reads slowly, past the reach of SNDHWM.
SUBSCRIBER_SEND_BUFFER_BYTES = 256 * 1024
# The largest message a publisher accepts from a subscriber: room for ZeroMQ's handshake (READY with
# its metadata) and a subscription to any topic of the wire format, not for more.
SUBSCRIBER_MAX_BYTES = 64

_curve: Optional[tuple[bytes, bytes]] = None  # (public, secret) key of this installation
_curve_endpoints: frozenset = frozenset()  # the endpoints CURVE applies to


def yielding_io_threads(ctx: zmq.Context) -> None:
    """Make the context's I/O threads SCHED_BATCH (ZMQ_THREAD_SCHED_POLICY; before its first
    socket): woken by a frame going in or out, they then wait for the stage's thread to block
    instead of preempting it, once a frame. Measured on the CPU-share pipeline: the encoder's loop
    was preempted 35 times a second (0 after), and the encoder and the server used 0.23 points of a
    core less together (docs/PERFORMANCE.md, sixth pass). Where the system has no such policy or
    libzmq no such option, the threads stay as they are. Not for capture: its loop may run
    SCHED_FIFO and must hand frames on at once."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:  # not Linux
        return
    try:
        ctx.set(zmq.THREAD_SCHED_POLICY, policy)
    except (zmq.ZMQError, AttributeError):  # a libzmq without the option
        pass


def load_curve_key(path: str) -> tuple[bytes, bytes]:
    """(public, secret) from a ZeroMQ secret key file; ConfigError saying what is wrong."""
    from flirstream.config import ConfigError
    import zmq.auth

    where = f"[endpoints] curve_key = {path!r}"
    if not zmq.has("curve"):
        raise ConfigError(f"{where}: this libzmq has no CURVE support; expected libzmq built "
                          f"with libsodium (pip's pyzmq wheels are)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except ValueError:
        raise ConfigError(f"{where}: expected a secret key file made by "
                          f"zmq.auth.create_certificates (the .key_secret one)") from None
    if not secret:
        raise ConfigError(f"{where}: holds only a public key; expected the .key_secret file")
    return public, secret


def configure(config: Any) -> None:
    """Apply [endpoints] curve_key to the links' sockets made from now on."""
    global _curve, _curve_endpoints
    path = getattr(config.endpoints, "curve_key", None)
    if not path:
        _curve, _curve_endpoints = None, frozenset()
        return
    _curve = load_curve_key(path)
    _curve_endpoints = frozenset({config.endpoints.frames, config.endpoints.images,
                                  config.endpoints.control,
                                  getattr(config.endpoints, "camera", config.endpoints.control)})


def curve_server(sock: zmq.Socket, endpoint: str) -> None:
    """Make a binding socket a CURVE server if CURVE is configured for this endpoint."""
    if _curve is not None and endpoint in _curve_endpoints:
        sock.curve_publickey, sock.curve_secretkey = _curve
        sock.curve_server = True


def curve_client(sock: zmq.Socket, endpoint: str) -> None:
    """Make a connecting socket a CURVE client if CURVE is configured for this endpoint."""
    if _curve is not None and endpoint in _curve_endpoints:
        sock.curve_serverkey = _curve[0]
        sock.curve_publickey, sock.curve_secretkey = _curve


def quick_reconnect(sock: zmq.Socket) -> None:
    """Retry a lost connection every 100-200 ms (not ZeroMQ's default backoff), so frames flow again
    well within 2 s of a restarted stage binding again."""
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 200)


def bind(sock: zmq.Socket, key: str, endpoint: str) -> None:
    """Bind `sock` to [endpoints] `key`. A failure (address in use, bad interface) is retried while
    the stage is a restarted one (flirstream.binding); otherwise, or when retrying gives up, the
    socket is closed and BindError (a ConfigError naming the setting: one line, status 2) or
    StageFault (status 1) is raised."""
    from flirstream.binding import BindError, bind_retrying
    from flirstream.config import ConfigError

    curve_server(sock, endpoint)
    if endpoint.startswith("ipc://"):  # the instance's runtime directory: made, for us alone
        directory = os.path.dirname(endpoint[len("ipc://"):])
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"[endpoints] {key} = {endpoint}: cannot make {directory}: "
                              f"{exc.strerror or exc}") from None

    def attempt() -> None:
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise BindError(f"[endpoints] {key} = {endpoint}: cannot bind: {exc}") from None

    try:
        bind_retrying(attempt)
    except Exception:
        sock.close()  # an open socket would keep ctx.term() waiting forever
        raise


CONTROL_MAX_BYTES = 64 * 1024  # requests are a few hundred bytes; this bounds a hostile one


def control_router(ctx: zmq.Context, key: str, endpoint: str,
                   hwm: Optional[int] = None) -> zmq.Socket:
    """A bound ROUTER answering control requests on [endpoints] `key` (the encoder's control,
    capture's camera): a reply to a peer that has gone is dropped, not an error."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, CONTROL_MAX_BYTES)
    if hwm is not None:
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
    bind(sock, key, endpoint)
    return sock


def control_dealer(ctx: zmq.Context, endpoint: str, hwm: int = 16) -> zmq.Socket:
    """A DEALER asking a stage's control ROUTER: it queues only while the peer is connected
    (ZMQ_IMMEDIATE), so nothing piles up while the stage is down, and reconnects quickly."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.SNDHWM, hwm)
    quick_reconnect(sock)
    curve_client(sock, endpoint)  # [endpoints] curve_key
    sock.connect(endpoint)
    return sock


def publisher(ctx: zmq.Context, key: str, endpoint: str, hwm: int = FRAME_HWM,
              socket_type: int = zmq.PUB) -> zmq.Socket:
    """A bound PUB (or XPUB, to see subscriptions) for [endpoints] `key` that drops frames for a
    slow subscriber rather than queueing them."""
    sock = ctx.socket(socket_type)
    if not (_curve is not None and endpoint in _curve_endpoints):
        # What a subscriber sends is its subscriptions. libzmq keeps every distinct one in a trie
        # (long ones cost it gigabytes: docs/SECURITY.md); the wire format's topics are a few
        # bytes, so a peer sending anything longer is disconnected by libzmq at once. (With CURVE
        # only holders of the key can connect at all, and its handshake needs bigger messages.)
        sock.setsockopt(zmq.MAXMSGSIZE, SUBSCRIBER_MAX_BYTES)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.SNDBUF, SUBSCRIBER_SEND_BUFFER_BYTES)
    sock.setsockopt(zmq.LINGER, 0)
    bind(sock, key, endpoint)
    return sock


def subscriber(ctx: zmq.Context, endpoint: str, topic: bytes, hwm: int = RECEIVE_HWM) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.LINGER, 0)
    # Reconnect quickly when a publisher restarts, so frames flow again well within 2 s.
    quick_reconnect(sock)
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    curve_client(sock, endpoint)
    sock.connect(endpoint)
    return sock


_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: no enum arithmetic per frame
_NOBLOCK, _MORE_NOBLOCK = int(zmq.NOBLOCK), int(zmq.SNDMORE | zmq.NOBLOCK)


def publish(sock: zmq.Socket, parts: list, copy: bool = True) -> None:
    """Send one message's parts without blocking (zmq.Again at the high-water mark). What
    send_multipart does, less its per-part flag arithmetic on enums (Python code, every frame)."""
    for part in parts[:-1]:
        sock.send(part, _MORE_NOBLOCK, copy=copy)
    sock.send(parts[-1], _NOBLOCK, copy=copy)


def has_message(sock: zmq.Socket) -> bool:
    """Whether a message waits (ZMQ_EVENTS): what a caller woken by the edge-triggered ZMQ_FD asks
    before it reads, and again before it sleeps."""
    return bool(sock.getsockopt(_EVENTS) & _POLLIN)


def drain_by_topic(sock: zmq.Socket, limit: int = 1024
                   ) -> tuple[dict[bytes, list], list[list], dict[bytes, int], bool]:
    """Read what is queued, without waiting: (the newest message's parts of each frame topic, every
    status message's parts in order, frames skipped of each topic, whether it stopped at `limit`
    messages rather than because nothing was left). The limit keeps a flood from starving the
    caller's other work; a caller waking on the socket's edge-triggered ZMQ_FD must come back
    without waiting when the last value is true."""
    newest: dict[bytes, list] = {}
    statuses: list[list] = []
    skipped: dict[bytes, int] = {}
    for n in range(limit):
        # The first read goes ahead: callers drain when the socket's FD fired, i.e. nearly always
        # with a message waiting, and a ZMQ_EVENTS query costs ~15 us after a frame period's
        # sleep. After that, asking whether another waits costs less than the zmq.Again of
        # reading when none does (a strerror() and enum look-ups); and each part says whether
        # more follow (no RCVMORE query per part).
        if n and not has_message(sock):
            break
        try:
            part = sock.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:  # nothing after all (the FD fired for a command of ZeroMQ's own)
            break
        parts = [part]
        while part.more:  # the other parts of a message arrive with its first
            part = sock.recv(zmq.NOBLOCK, copy=False)
            parts.append(part)
        topic = parts[0].bytes
        if topic == STATUS_TOPIC:
            statuses.append(parts)
            continue
        if topic in newest:  # a newer frame came in before the caller got to this one
            skipped[topic] = skipped.get(topic, 0) + 1
        newest[topic] = parts
    else:
        return newest, statuses, skipped, True
    return newest, statuses, skipped, False


def drain(sock: zmq.Socket, limit: int = 1024) -> tuple[Optional[list], list[list], int, bool]:
    """drain_by_topic for a socket with one frame topic: (the newest frame's parts or None, every
    status message's parts in order, frames skipped, whether it stopped at `limit`)."""
    newest, statuses, skipped, more = drain_by_topic(sock, limit)
    frames = list(newest.values())
    return ((frames[-1] if frames else None), statuses,
            sum(skipped.values()) + max(0, len(frames) - 1), more)


def recv_latest(sock: zmq.Socket, timeout_ms: int = 0) -> tuple[Optional[list], int]:
    """Wait up to timeout_ms for a message, then drain: (newest frame's parts or None, skipped)."""
    if timeout_ms and not sock.poll(timeout_ms):
        return None, 0
    newest, _, skipped, _ = drain(sock)
    return newest, skipped
