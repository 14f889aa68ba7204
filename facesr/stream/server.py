"""The WebRTC relay: aiohttp signalling in aiortc's example convention, one `Peer` per connection.

    POST /offer  {"sdp": ..., "type": "offer"}  ->  {"sdp": ..., "type": "answer"}
    GET  /       the page: camera, enhanced video side by side, live stats, a bicubic switch
    GET  /config what the page needs to know (relay or viewer of a local source, the scale)

Each peer's camera track goes back enhanced on the same connection (`EnhancedTrack`, with
its own Enhancer and so its own face tracker); its audio goes back untouched. With a local
source the peers are viewers: each gets a `ViewerTrack` of the source's enhanced frames.
A data channel named "facesr" carries the page's switch ({"mode": "bicubic"|"facesr"}) one
way and the stats twice a second the other way.

Bad peers get 4xx and never take the server down: bodies over `max_offer_bytes` get 413,
a body that is not `application/json` 415, one not sent within `request_timeout` seconds 408,
malformed JSON or SDP 400, an offer without video or with more than `max_candidates` ICE
candidates 400, peers beyond `max_peers` 503. A peer whose camera sends nothing for
`peer_timeout` seconds (vanished without a goodbye, or a camera that stopped) is closed.
Requiring JSON also keeps other web sites out: a page elsewhere cannot POST JSON to the relay
without a CORS preflight, which the relay does not answer.

A relay runs for hours with peers coming and going, each with 1280x720 frames allocated and
freed in many threads: `release_frame_memory` makes glibc give those back (see there).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import h264, vpx

from .options import StreamOptions
from .tracks import MODES, EnhancedTrack, ViewerTrack

log = logging.getLogger("facesr.stream")

STATIC = resources.files(__package__) / "static"


def set_video_bitrate(bps: int) -> None:
    """Start aiortc's VP8 and H.264 encoders at `bps` and let congestion control go up to 2x.

    aiortc has no per-sender setting: its encoders start at module constants (about 0.5-1
    Mbps, sized for 640x480), far too little for a 4x upscaled face. The relay's outgoing
    streams are all upscaled, so setting them for the process is what it needs.
    """
    for codec in (vpx, h264):
        codec.DEFAULT_BITRATE = int(bps)
        codec.MAX_BITRATE = max(codec.MAX_BITRATE, int(2 * bps))


def bitrate_for(width: int, height: int, fps: float = 30.0, bits_per_pixel: float = 0.08) -> int:
    """A VP8/H.264 real-time bitrate for a size: 0.08 bit per pixel per frame (720p30: 2.2 Mbps)."""
    return int(width * height * fps * bits_per_pixel)


M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters


def release_frame_memory(threshold: int = 1 << 20, arenas: int = 2) -> bool:
    """Tune glibc's allocator for a process that runs for hours with peers coming and going, so
    that its memory stays flat; True if the C library took the settings (glibc; elsewhere a no-op).

    * Allocations of `threshold` bytes and up (every video frame) are served by mmap, so freeing
      one gives it back to the system at once. By default glibc raises its mmap threshold to the
      size of each mmapped block freed (up to 32 MiB), so after the first few, 1280x720 frames
      came from the heaps of the threads that allocate them (aiortc's codec threads, the enhancer
      workers, the decoders), which kept what was freed: a relay's RSS grew by about 20 MB for
      each round of two peers, without end. A fixed threshold also turns that adjustment off.
    * At most `arenas` heaps for new threads (glibc's default is 8 per core): each peer's
      threads otherwise spread the smaller allocations (codec state, crops, packets) over many
      heaps, each of which keeps its free space; with two, a relay's RSS after each round of
      peers stays flat.

    Process-wide; harmless to repeat.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1 and mallopt(M_ARENA_MAX, int(arenas)) == 1


def trim_memory() -> None:
    """Hand the heaps' free pages back to the system (glibc's malloc_trim; a no-op elsewhere).

    Called when a peer leaves: what its threads freed in the middle of a heap otherwise stays
    with the process (a 10-minute soak: RSS +59 MB after the first minute without it, +22 MB with it).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class BadOffer(ValueError):
    pass


def parse_offer(body: object) -> RTCSessionDescription:
    """The request's JSON as an offer, or BadOffer saying what is wrong with it.

    An offer must carry a video m-line: there is nothing else to enhance or to show.
    """
    if not isinstance(body, dict):
        raise BadOffer("expected a JSON object {\"sdp\": ..., \"type\": \"offer\"}")
    if body.get("type") != "offer":
        raise BadOffer("\"type\" must be \"offer\"")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or "\nm=" not in sdp:
        raise BadOffer("\"sdp\" is not a session description (it must start with v=0 and have m= lines)")
    if CONTROL_CHARACTERS.search(sdp):
        raise BadOffer("\"sdp\" holds control characters")
    if not any(line.startswith("m=video ") for line in sdp.splitlines()):
        raise BadOffer("the offer has no video (m=video): nothing to enhance")
    return RTCSessionDescription(sdp=sdp, type="offer")


def check_offer(offer: RTCSessionDescription, max_candidates: int | None = None) -> None:
    """BadOffer unless the offer can set up a connection: a DTLS fingerprint and ICE credentials
    (aiortc would take an offer without a fingerprint and fail later, inside its connection
    task), and at most `max_candidates` ICE candidates (each one is an address the relay would probe)."""
    lines = offer.sdp.splitlines()
    for attribute, what in (("a=fingerprint:", "DTLS fingerprint"), ("a=ice-ufrag:", "ICE username"),
                            ("a=ice-pwd:", "ICE password")):
        if not any(line.startswith(attribute) for line in lines):
            raise BadOffer(f"the offer has no {what} ({attribute.rstrip(':')})")
    if max_candidates is not None:
        candidates = sum(1 for line in lines if line.startswith("a=candidate:"))
        if candidates > max_candidates:
            raise BadOffer(f"the offer has {candidates} ICE candidates; at most {max_candidates} are taken")


class Peer:
    """One browser or aiortc client: its connection, its tracks, its Enhancer, its stats."""

    counter = 0

    def __init__(self, relay: Relay) -> None:
        Peer.counter += 1
        self.id = Peer.counter
        self.relay = relay
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=relay.ice_servers))
        self.enhancer = None
        self.video: EnhancedTrack | ViewerTrack | None = None
        self.channel = None
        self.mode = "facesr"
        self._tasks: set[asyncio.Task] = set()
        self._closed = asyncio.Event()
        self._closing = False

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer %d: %s", self.id, self.pc.connectionState)
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

        @self.pc.on("datachannel")
        def on_channel(channel) -> None:
            self.channel = channel

            @channel.on("message")
            def on_message(message) -> None:
                self._on_message(message)

    def _on_message(self, message) -> None:
        try:
            mode = json.loads(message).get("mode")
        except (ValueError, AttributeError, TypeError):
            return  # a page's bad message changes nothing
        if mode in MODES:
            self.mode = mode
            if self.video is not None:
                self.video.mode = mode

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        relay = self.relay
        tracks = []

        @self.pc.on("track")
        def on_track(track) -> None:
            tracks.append(track)

        await self.pc.setRemoteDescription(offer)
        if relay.source is not None:
            if any(t.kind == "video" for t in self.pc.getTransceivers()):
                self.video = ViewerTrack(relay.source, relay.executor, mode=self.mode)
                self.pc.addTrack(self.video)  # answers the offer's video m-line
            for track in tracks:
                if track.kind == "audio":
                    self.pc.addTrack(track)
        else:
            for track in tracks:
                if track.kind == "audio":
                    self.pc.addTrack(track)  # echoed untouched
                elif track.kind == "video" and self.video is None:
                    self.enhancer = await asyncio.get_running_loop().run_in_executor(relay.executor, relay.make_enhancer)
                    self.video = EnhancedTrack(track, self.enhancer, relay.executor, mode=self.mode)
                    self.pc.addTrack(self.video)
        if self.video is None:
            raise BadOffer("no video track could be negotiated (no codec in common, or the video is not sent)")
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.spawn(self._report())
        if isinstance(self.video, EnhancedTrack):
            self.spawn(self._watchdog())
        return self.pc.localDescription

    def stats(self) -> dict:
        s = self.video.stats.snapshot() if self.video is not None else {}
        return {"peer": self.id, "mode": self.mode, "device": self.relay.device, "peers": len(self.relay.peers)} | s

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.channel is not None and self.channel.readyState == "open":
                self.channel.send(json.dumps(self.stats()))

    async def _watchdog(self) -> None:
        timeout = self.relay.peer_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            if time.monotonic() - self.video.stats.last_in > timeout:
                log.info("peer %d: no video for %.0f s, closing", self.id, timeout)
                self.spawn(self.close())
                return

    async def close(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self.relay.peers.discard(self)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self.video is not None:
            self.video.stop()
        await self.pc.close()
        if isinstance(self.video, EnhancedTrack):
            await asyncio.get_running_loop().run_in_executor(self.relay.executor, self.video.release)
        await asyncio.get_running_loop().run_in_executor(self.relay.executor, trim_memory)  # no new thread
        self._closed.set()


class Relay:
    """The aiohttp application and everything its peers share: the enhancer factory, the worker threads."""

    def __init__(self, make_enhancer: Callable[[], object], opts: StreamOptions | None = None, *,
                 source=None, device: str = "cpu") -> None:
        opts = opts or StreamOptions()
        self.make_enhancer = make_enhancer
        self.source = source
        self.max_peers = opts.max_peers
        self.max_offer_bytes = max_offer_bytes = opts.max_offer_bytes
        self.peer_timeout = opts.peer_timeout
        self.request_timeout = opts.request_timeout
        self.max_candidates = opts.max_candidates
        release_frame_memory()
        self.ice_servers = [RTCIceServer(u) for u in opts.ice_servers]
        self.device = device
        self.executor = ThreadPoolExecutor(max_workers=opts.threads, thread_name_prefix="facesr-enhance")
        self.peers: set[Peer] = set()
        self.pending = 0  # offers being answered
        self.app = web.Application(client_max_size=max_offer_bytes)
        self.app.add_routes([
            web.get("/", self.index),
            web.get("/app.js", self.script),
            web.get("/config", self.config),
            web.post("/offer", self.offer),
        ])
        self.app.on_shutdown.append(self.shutdown)

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html")

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "app.js").read_text(), content_type="application/javascript")

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response({
            "mode": "viewer" if self.source is not None else "relay",
            "scale": getattr(self.source.enhancer, "scale", None) if self.source is not None else None,
            "max_peers": self.max_peers,
            "peers": len(self.peers),
        })

    def _error(self, status: int, message: str, close: bool = False) -> web.Response:
        """A JSON error; close=True where the rest of the request body may still be unread."""
        response = web.json_response({"error": message}, status=status)
        if close:
            response.force_close()
        return response

    async def offer(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_offer_bytes:
            return self._error(413, f"offer larger than {self.max_offer_bytes} bytes")
        if request.content_type != "application/json":
            return self._error(415, f"an offer is application/json, not {request.content_type or 'untyped'}")
        try:
            raw = await asyncio.wait_for(request.read(), self.request_timeout)
        except asyncio.TimeoutError:
            return self._error(408, f"the offer did not arrive within {self.request_timeout:g} s", close=True)
        except web.HTTPRequestEntityTooLarge:
            return self._error(413, f"offer larger than {self.max_offer_bytes} bytes", close=True)
        try:
            offer = parse_offer(json.loads(raw))
        except (ValueError, UnicodeDecodeError) as exc:
            return self._error(400, f"bad offer: {exc}")
        except RecursionError:  # JSON nested thousands deep
            return self._error(400, "bad offer: JSON nested too deep")
        if len(self.peers) + self.pending >= self.max_peers:
            return self._error(503, f"the relay is full ({self.max_peers} peers); try again later")
        try:
            check_offer(offer, self.max_candidates)
        except BadOffer as exc:
            return self._error(400, f"bad offer: {exc}")
        self.pending += 1
        peer = Peer(self)
        try:
            answer = await peer.answer(offer)
        except Exception as exc:  # aiortc rejects what it cannot negotiate: the peer's fault, not the server's
            await peer.close()
            return self._error(400, f"cannot answer this offer: {type(exc).__name__}: {exc}")
        finally:
            self.pending -= 1
        if peer._closing:
            return self._error(400, "the peer's connection closed while answering")
        self.peers.add(peer)
        log.info("peer %d connected (%d now)", peer.id, len(self.peers))
        return web.json_response({"sdp": answer.sdp, "type": answer.type})

    async def shutdown(self, app: web.Application | None = None) -> None:
        await asyncio.gather(*(p.close() for p in list(self.peers)), return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)
