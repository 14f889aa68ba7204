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
malformed JSON or SDP 400, peers beyond `max_peers` 503. A peer whose camera sends nothing
for `peer_timeout` seconds (vanished without a goodbye) is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
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


class BadOffer(ValueError):
    pass


def parse_offer(body: object) -> RTCSessionDescription:
    """The request's JSON as an offer, or BadOffer saying what is wrong with it."""
    if not isinstance(body, dict):
        raise BadOffer("expected a JSON object {\"sdp\": ..., \"type\": \"offer\"}")
    if body.get("type") != "offer":
        raise BadOffer("\"type\" must be \"offer\"")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or "\nm=" not in sdp:
        raise BadOffer("\"sdp\" is not a session description (it must start with v=0 and have m= lines)")
    return RTCSessionDescription(sdp=sdp, type="offer")


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

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    async def offer(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_offer_bytes:
            return self._error(413, f"offer larger than {self.max_offer_bytes} bytes")
        try:
            body = json.loads(await request.read())
            offer = parse_offer(body)
        except web.HTTPRequestEntityTooLarge:
            return self._error(413, f"offer larger than {self.max_offer_bytes} bytes")
        except (ValueError, UnicodeDecodeError) as exc:
            return self._error(400, f"bad offer: {exc}")
        if len(self.peers) + self.pending >= self.max_peers:
            return self._error(503, f"the relay is full ({self.max_peers} peers); try again later")
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
