// facesr stream page: send the camera to the relay, show what comes back, and the relay's stats.
// Signalling is aiortc's example convention: POST /offer {sdp, type} -> {sdp, type}.
"use strict";

const $ = (id) => document.getElementById(id);
let pc = null;
let channel = null;
let displayed = [];  // times of frames painted in the remote video (for displayed fps)

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function waitForIceGathering(conn) {
  // aiortc does not trickle candidates: send the offer once gathering is complete.
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (conn.iceGatheringState === "complete") {
        conn.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    conn.addEventListener("icegatheringstatechange", check);
  });
}

function countPaintedFrames(video) {
  if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
  const onFrame = (now) => {
    displayed.push(now);
    while (displayed.length && now - displayed[0] > 2000) displayed.shift();
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

function showStats(s) {
  const size = (v) => (v ? `${v[0]}x${v[1]}` : "-");
  const pair = (a, b) => `${a ?? "-"} / ${b ?? "-"}`;
  const shownFps = displayed.length > 1 ? ((displayed.length - 1) * 1000 / (displayed.at(-1) - displayed[0])).toFixed(1) : "-";
  $("in-size").textContent = size(s.in_size);
  $("out-size").textContent = size(s.out_size);
  $("fps").textContent = `${s.fps_in} / ${s.fps_out} / ${shownFps}`;
  $("enhance-ms").textContent = pair(s.enhance_ms_p50, s.enhance_ms_p95);
  $("added-ms").textContent = pair(s.added_ms_p50, s.added_ms_p95);
  $("dropped").textContent = `${s.dropped} / ${s.frames_out}`;
  $("mode").textContent = `${s.mode} on ${s.device} (peer ${s.peer}, ${s.peers} connected)`;
}

function sendMode() {
  if (channel && channel.readyState === "open") {
    channel.send(JSON.stringify({ mode: $("bicubic").checked ? "bicubic" : "facesr" }));
  }
}

async function start() {
  $("start").disabled = true;
  try {
    const config = await (await fetch("config")).json();
    pc = new RTCPeerConnection();
    channel = pc.createDataChannel("facesr");
    channel.onopen = sendMode;
    channel.onmessage = (event) => showStats(JSON.parse(event.data));
    pc.ontrack = (event) => {
      if (event.track.kind !== "video") return;
      $("remote").srcObject = new MediaStream([event.track]);
    };
    pc.onconnectionstatechange = () => {
      status(pc.connectionState, pc.connectionState === "failed");
      if (pc.connectionState === "failed") stop();
    };
    if (config.mode === "viewer") {
      pc.addTransceiver("video", { direction: "recvonly" });
    } else {
      const [width, height] = $("size").value.split("x").map(Number);
      status("asking for the camera...");
      const local = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: width }, height: { ideal: height } },
        audio: $("audio").checked,
      });
      $("local").srcObject = local;
      for (const track of local.getTracks()) {
        const sender = pc.addTrack(track, local);
        if (track.kind === "video") {
          track.contentHint = "motion";
          // A call at low resolution: keep the resolution, let the frame rate give way.
          const params = sender.getParameters();
          params.degradationPreference = "maintain-resolution";
          sender.setParameters(params).catch(() => {});
        }
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc);
    status("connecting...");
    const response = await fetch("offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    await pc.setRemoteDescription(answer);
    $("stop").disabled = false;
  } catch (err) {
    status(`error: ${err.message}`, true);
    stop();
  }
}

function stop() {
  if (pc) {
    for (const sender of pc.getSenders()) if (sender.track) sender.track.stop();
    pc.close();
    pc = null;
  }
  channel = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

async function init() {
  const config = await (await fetch("config")).json();
  if (config.mode === "viewer") {
    $("videos").classList.add("viewer");
    $("local-figure").hidden = true;
    $("size-label").hidden = true;
    $("audio-label").hidden = true;
    $("remote-caption").textContent = "facesr (the server's source, enhanced)";
  }
  const remote = $("remote");
  countPaintedFrames(remote);
  remote.addEventListener("resize", () => {
    $("shown-size").textContent = `${remote.videoWidth}x${remote.videoHeight}`;
  });
  $("start").onclick = start;
  $("stop").onclick = stop;
  $("bicubic").onchange = sendMode;
}

init();
