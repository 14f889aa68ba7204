"""What a `facesr stream` run is: every option with its default, in one place (light to import)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StreamOptions:
    webrtc: bool = False  # serve the page and POST /offer
    input: str | None = None  # a local source: a camera, a file or a URL
    virtual_camera: str | None = None  # None: none; "": the first free loopback device; else that device
    loop: bool = False  # play a file --input again from the start at its end
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port
    max_peers: int = 4  # peers at once; more get 503
    max_offer_bytes: int = 64 * 1024  # larger offers get 413
    threads: int = 2  # threads running Enhancers, shared by all peers
    peer_timeout: float = 10.0  # seconds: close a peer whose camera sends nothing this long
    request_timeout: float = 10.0  # seconds for a client to send its whole request (and the idle keep-alive)
    max_candidates: int = 64  # ICE candidates an offer may carry; more get 400
    bitrate: int | None = None  # outgoing video, bps; None: 0.08 bit per output pixel at 30 fps
    ice_servers: tuple[str, ...] = field(default_factory=tuple)  # STUN servers for peers behind NAT
    scale: int = 4
