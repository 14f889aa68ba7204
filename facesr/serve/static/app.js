// facesr serve page: upload a file to POST /api/jobs, follow GET /api/jobs/{id}, then compare and download.
"use strict";

const $ = (id) => document.getElementById(id);
let config = null;
let lastFile = null;
let job = null;  // the job's latest status
let polling = null;

function status(text, error = false, detail = "") {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
  $("detail").textContent = detail;
}

function clock(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  return seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function showStrength() {
  const gan = config && $("model").value in config.gan_models;
  $("strength-label").hidden = !gan;
}

async function loadConfig() {
  config = await (await fetch("/api/config")).json();
  for (const name of config.models) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    option.selected = name === config.default_model;
    $("model").append(option);
  }
  $("strength").max = config.max_strength;
  $("strength").value = config.default_strength;
  $("strength-value").textContent = Number(config.default_strength).toFixed(2);
  $("limits").textContent = `JPEG, PNG, WebP photos; MP4, MOV, WebM videos up to ${clock(config.max_video_seconds)}; ` +
    `at most ${config.max_upload_mb} MB. The result is ${config.scale}x larger.`;
  showStrength();
}

function upload(file) {
  lastFile = file;
  $("result").hidden = true;
  $("progress").value = 0;
  if (polling) clearTimeout(polling);
  if (config && file.size > config.max_upload_mb * 1024 * 1024) {
    status(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB: the limit is ${config.max_upload_mb} MB.`, true);
    return;
  }
  const form = new FormData();
  form.append("mode", mode());
  form.append("model", $("model").value);
  if (!$("strength-label").hidden) form.append("strength", $("strength").value);
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      $("progress").value = e.loaded / e.total;
      status("Uploading", false, `${Math.round(100 * e.loaded / e.total)} %`);
    }
  };
  xhr.onerror = () => status("Upload failed: the connection closed (is the file too large?)", true);
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status !== 202) {
      status(`Refused: ${body.error || xhr.statusText}`, true);
      return;
    }
    $("progress").value = 0;
    status("Queued");
    poll(body.id);
  };
  status("Uploading", false, "0 %");
  xhr.send(form);
}

async function poll(id) {
  let s;
  try {
    const response = await fetch(`/api/jobs/${id}`, { cache: "no-store" });
    s = await response.json();
    if (!response.ok) throw new Error(s.error || response.statusText);
  } catch (e) {
    status(`Lost the job: ${e.message}`, true);
    return;
  }
  job = s;
  $("progress").value = s.progress;
  if (s.state === "queued") {
    status("Queued", false, s.ahead ? `${s.ahead} job${s.ahead > 1 ? "s" : ""} ahead` : "next");
  } else if (s.state === "running") {
    const unit = s.unit === "frames" ? "frame" : s.unit === "tiles" ? "tile" : "photo";
    const count = s.total ? `${unit} ${s.done} of ${s.total}` : `${s.done} ${s.unit} done`;
    const left = s.eta_seconds == null ? "" : ` · about ${clock(s.eta_seconds)} left`;
    status("Running", false, `${count}${left}`);
  } else if (s.state === "failed") {
    status(`Failed: ${s.error}`, true);
    return;
  } else if (s.state === "done") {
    status("Done", false, `in ${s.seconds.toFixed(1)} s`);
    showResult(s);
    return;
  }
  polling = setTimeout(() => poll(id), 400);
}

function setSplit(percent) {
  percent = Math.min(100, Math.max(0, percent));
  $("after").style.clipPath = `inset(0 0 0 ${percent}%)`;
  $("divider").style.left = `${percent}%`;
  $("split").value = percent;
}

function loaded(img) {
  return img.complete && img.naturalWidth ? Promise.resolve() : new Promise((ok, fail) => {
    img.onload = ok;
    img.onerror = () => fail(new Error("image did not load"));
  });
}

function zoomBox(s, w, h) {
  // the largest face, with a margin, as a square; else the middle of the picture
  let [x0, y0, x1, y1] = s.faces.length ? s.faces[0] : [w * 3 / 8, h * 3 / 8, w * 5 / 8, h * 5 / 8];
  const side = Math.min(Math.max(x1 - x0, y1 - y0) * 1.3, w, h);
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const x = Math.min(Math.max(cx - side / 2, 0), w - side), y = Math.min(Math.max(cy - side / 2, 0), h - side);
  return [x, y, side];
}

function drawZoom(box) {
  const [x, y, side] = box;
  for (const [img, canvas] of [["before", "zoom-before"], ["after", "zoom-after"]]) {
    const c = $(canvas).getContext("2d");
    c.imageSmoothingEnabled = side < $(canvas).width;
    c.imageSmoothingQuality = "high";
    c.drawImage($(img), x, y, side, side, 0, 0, $(canvas).width, $(canvas).height);
  }
}

async function showResult(s) {
  $("before").src = s.compare.bicubic;
  $("after").src = s.compare.facesr;
  $("download").href = s.result;
  $("download").setAttribute("download", s.download_name);
  $("download").textContent = `Download ${s.download_name}`;
  $("meta").textContent = `${s.input.width}x${s.input.height} → ${s.output.width}x${s.output.height}, ${s.mode === "faces" ? "faces" : "whole picture"}, ${s.model}`;
  $("video").hidden = s.kind !== "video";
  if (s.kind === "video") $("video").src = s.result;
  else $("video").removeAttribute("src");
  $("zoom-caption").textContent = s.faces.length ? "zoom on the face: bicubic" : "zoom (no face found): bicubic";
  $("result").hidden = false;
  setSplit(50);
  try {
    await Promise.all([loaded($("before")), loaded($("after"))]);
  } catch (e) {
    status(`The result did not load: ${e.message}`, true);
    return;
  }
  drawZoom(zoomBox(s, $("after").naturalWidth, $("after").naturalHeight));
  document.body.dataset.compareReady = s.id;
}

function dragDivider() {
  const area = $("compare");
  let dragging = false;
  const move = (e) => {
    const r = area.getBoundingClientRect();
    setSplit(100 * (e.clientX - r.left) / r.width);
  };
  area.addEventListener("pointerdown", (e) => { dragging = true; area.setPointerCapture(e.pointerId); move(e); });
  area.addEventListener("pointermove", (e) => { if (dragging) move(e); });
  area.addEventListener("pointerup", () => { dragging = false; });
  area.addEventListener("dblclick", (e) => {  // zoom where double-clicked
    if (!job) return;
    const r = area.getBoundingClientRect(), w = $("after").naturalWidth, h = $("after").naturalHeight;
    const side = Math.min(w, h) / 6;
    const cx = (e.clientX - r.left) / r.width * w, cy = (e.clientY - r.top) / r.height * h;
    drawZoom([Math.min(Math.max(cx - side / 2, 0), w - side), Math.min(Math.max(cy - side / 2, 0), h - side), side]);
  });
  $("split").addEventListener("input", () => setSplit(Number($("split").value)));
}

function dropZone() {
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]); });
  $("file").addEventListener("change", () => { if ($("file").files.length) upload($("file").files[0]); });
}

$("model").addEventListener("change", showStrength);
$("strength").addEventListener("input", () => { $("strength-value").textContent = Number($("strength").value).toFixed(2); });
$("again").addEventListener("click", () => { if (lastFile) upload(lastFile); });
$("delete").addEventListener("click", async () => {
  if (!job) return;
  await fetch(`/api/jobs/${job.id}`, { method: "DELETE" });
  $("result").hidden = true;
  $("video").removeAttribute("src");
  status("Deleted from the server.");
});
dragDivider();
dropZone();
loadConfig().catch((e) => status(`Cannot reach the server: ${e.message}`, true));
