// restorekit web UI: plain JavaScript, no libraries, nothing loaded from outside this server.
// document.body.dataset.state is loading | idle | running | done | error, which the browser tests wait on.
"use strict";

const $ = (id) => document.getElementById(id);
let catalogue = null;   // /api/models
let picked = null;      // {blob, name} of the image to restore
let crop = {fx: 0.5, fy: 0.5};

function setState(state) { document.body.dataset.state = state; }

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("progress-row").hidden = true;
  $("error").scrollIntoView({block: "nearest"});
  setState("error");
}

async function answer(response) {
  // Every API answer is JSON; errors carry {"error": "..."}.
  let payload = null;
  try { payload = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error((payload && payload.error) || `the server answered ${response.status}`);
  return payload;
}

async function api(url, options) {
  let response;
  try { response = await fetch(url, options); } catch (_) {
    throw new Error("the server did not answer: is `restorekit ui` still running?");
  }
  return answer(response);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

function renderCard() {
  const entry = catalogue.models.find((m) => m.key === $("model").value);
  if (!entry) { $("card").innerHTML = ""; return; }
  const c = entry.card;
  const scores = Object.entries(c.scores || {});
  let html = `<strong>${escapeHtml(c.name)}</strong> — ${escapeHtml(c.description)}<br>`;
  html += `family ${escapeHtml(c.family)}, task ${escapeHtml(c.task)}, scale x${escapeHtml(c.scale)}`;
  if (c.params) html += `, ${(c.params / 1e6).toFixed(3)} M parameters`;
  html += `<br>license: <span class="${c.non_commercial ? "nc" : ""}">${escapeHtml(c.license)}` +
          `${c.non_commercial ? " (non-commercial use only)" : ""}</span>`;
  if (c.source) html += `<br>source: ${escapeHtml(c.source)}`;
  if (scores.length) {
    html += `<table><tr><th>paper</th><th>PSNR</th><th>SSIM</th></tr>`;
    for (const [set, r] of scores) {
      html += `<tr><td>${escapeHtml(set)}</td><td>${r.psnr.toFixed(2)}</td><td>${r.ssim == null ? "" : r.ssim.toFixed(4)}</td></tr>`;
    }
    html += `</table><span class="hint">measured as: ${escapeHtml(c.convention)}</span>`;
  }
  $("card").innerHTML = html;
}

function fillModels() {
  const task = $("task").value;
  const select = $("model");
  select.innerHTML = "";
  for (const m of catalogue.models.filter((m) => m.task === task)) {
    select.add(new Option(m.label, m.key, false, m.key === catalogue.defaults[task]));
  }
  renderCard();
}

function updateRunButton() { $("run").disabled = !(picked && $("model").value); }

function pick(blob, name) {
  picked = {blob, name};
  $("picked").textContent = `${name} (${(blob.size / 1024).toFixed(1)} KiB)`;
  $("error").hidden = true;
  updateRunButton();
}

async function init() {
  // The page stays "loading" until its menus are built, so nothing (a person or a test) acts early.
  try {
    catalogue = await api("/api/models");
    for (const task of catalogue.tasks) $("task").add(new Option(task, task));
    for (const p of catalogue.precisions) $("precision").add(new Option(p, p));
    fillModels();
    const samples = (await api("/api/samples")).samples;
    for (const name of samples) $("sample").add(new Option(name, name));
    $("samples-row").hidden = samples.length === 0;
    setState("idle");
  } catch (err) {
    showError(err.message);
  }
  updateRunButton();
}

$("task").addEventListener("change", () => { fillModels(); updateRunButton(); });
$("model").addEventListener("change", () => { renderCard(); updateRunButton(); });
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) { $("sample").value = ""; pick(file, file.name); }
});
$("sample").addEventListener("change", async () => {
  const name = $("sample").value;
  if (!name) return;
  try {
    const response = await fetch(`/samples/${encodeURIComponent(name)}`);
    if (!response.ok) throw new Error(`sample ${name} could not be loaded`);
    $("file").value = "";
    pick(await response.blob(), name);
  } catch (err) { showError(err.message); }
});

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

$("run").addEventListener("click", async () => {
  if (!picked) return;
  $("run").disabled = true;
  $("error").hidden = true;
  $("progress-row").hidden = false;
  $("progress").removeAttribute("value");  // indeterminate until the model reports progress
  $("stage").textContent = "uploading";
  $("result").hidden = true;  // never show the previous image's result (and download) beside a new run
  $("empty").hidden = false;
  setState("running");
  const query = new URLSearchParams({
    model: $("model").value, tile: $("tile").value, tile_overlap: $("tile-overlap").value,
    tta: $("tta").checked ? "1" : "0", precision: $("precision").value, filename: picked.name,
  });
  try {
    const {id} = await api(`/api/restore?${query}`, {method: "POST", body: picked.blob, headers: {"X-Restorekit": "1"}});
    let job;
    for (;;) {
      job = await api(`/api/jobs/${id}`);
      $("stage").textContent = job.stage;
      if (job.progress == null) $("progress").removeAttribute("value"); else $("progress").value = job.progress;
      if (job.status === "done" || job.status === "error") break;
      await sleep(200);
    }
    if (job.status === "error") { showError(job.message); return; }
    await showResult(job);
  } catch (err) {
    showError(err.message);
  } finally {
    updateRunButton();
  }
});

function loadImage(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error("the preview could not be loaded"));
    img.src = url;
  });
}

async function showResult(job) {
  await Promise.all([loadImage($("before"), `/api/jobs/${job.id}/before.png`),
                     loadImage($("after"), `/api/jobs/${job.id}/after.png`)]);
  const out = job.info.output, inp = job.info.input;
  const link = $("download");
  link.href = `/api/jobs/${job.id}/result`;
  link.download = job.download_name;
  link.textContent = `Download ${job.download_name}`;
  $("result-info").textContent =
    `${inp.width}×${inp.height} → ${out.width}×${out.height}, ${out.depth}${out.alpha ? " + alpha" : ""}, ${out.format || ""}` +
    (out.preview_scale < 1 ? ` (shown at ${Math.round(out.preview_scale * 100)}%; the download is full size)` : "");
  // Keep tall images within the window: the box keeps the image's aspect ratio, so the overlay,
  // the split and the crop clicks stay aligned.
  $("viewer").style.maxWidth = `calc(75vh * ${out.width / out.height})`;
  $("empty").hidden = true;
  $("result").hidden = false;
  $("progress-row").hidden = true;
  crop = {fx: 0.5, fy: 0.5};
  setSplit();
  drawZoom();
  setState("done");
}

function setSplit() {
  const v = Number($("split").value);
  $("before").style.clipPath = `inset(0 ${100 - v}% 0 0)`;
  $("divider").style.left = `${v}%`;
}

function drawZoom() {
  const before = $("before"), after = $("after");
  if (!after.naturalWidth) return;
  const zoom = Number($("zoom").value);
  const size = 256 / zoom;  // crop side in output pixels
  const ow = after.naturalWidth, oh = after.naturalHeight;
  const sx = Math.max(0, Math.min(ow - size, crop.fx * ow - size / 2));
  const sy = Math.max(0, Math.min(oh - size, crop.fy * oh - size / 2));
  const ratio = before.naturalWidth / ow;  // 1 for restoration, 1/scale for super-resolution
  for (const [canvas, img, r] of [[$("zoom-before"), before, ratio], [$("zoom-after"), after, 1]]) {
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, sx * r, sy * r, size * r, size * r, 0, 0, canvas.width, canvas.height);
  }
}

$("split").addEventListener("input", setSplit);
$("zoom").addEventListener("change", drawZoom);

// On the image: drag to move the split, click (no drag) to move the zoomed crop.
let drag = null;
function fractionAt(event) {
  const box = $("compare").getBoundingClientRect();
  return {fx: Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)),
          fy: Math.min(1, Math.max(0, (event.clientY - box.top) / box.height))};
}
$("compare").addEventListener("pointerdown", (event) => {
  event.preventDefault();  // no native image drag-and-drop, which would swallow the pointer moves
  drag = {x: event.clientX, y: event.clientY, moved: false};
  $("compare").setPointerCapture(event.pointerId);
});
$("compare").addEventListener("pointermove", (event) => {
  if (!drag) return;
  if (Math.abs(event.clientX - drag.x) + Math.abs(event.clientY - drag.y) > 4) drag.moved = true;
  if (drag.moved) { $("split").value = String(Math.round(fractionAt(event).fx * 100)); setSplit(); }
});
$("compare").addEventListener("pointerup", (event) => {
  if (drag && !drag.moved) { crop = fractionAt(event); drawZoom(); }
  drag = null;
});
$("compare").addEventListener("pointercancel", () => { drag = null; });

init();
