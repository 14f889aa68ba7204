"""Real-time streams: the WebRTC relay (server), a local source (source) to a virtual camera
(virtualcam) or to browsers, the per-frame tracks (tracks) and the newest-frame slot they
share (slot); `client` is an aiortc client that measures a relay's latency end to end."""
