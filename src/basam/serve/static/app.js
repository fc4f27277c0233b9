// basam serve: the page. Plain DOM, no build step. The server does all the segmenting; this file
// keeps the prompts, draws masks from the PNGs it gets back, and shows every error it is sent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,
  image: null,        // {image_id, width, height, note}
  points: [],         // [{x, y, label}] in image pixels
  box: null,          // [x0, y0, x1, y1] in image pixels
  history: [],        // what undo takes back: {kind: "point"} | {kind: "box", previous}
  result: null,       // the last /api/predict answer
  selected: 0,        // which of its masks is shown
  everything: null,   // the last /api/everything answer
  results: 0,         // answers drawn so far (tests wait on this)
};
window.basam = state;

// --- talking to the server ---------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body;
  try { body = await response.json(); } catch { body = {}; }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status} ${response.statusText}`);
  return body;
}

const postJSON = (path, body) => api(path, {
  method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
});

function setState(name, text) {
  document.body.dataset.state = name;
  if (text !== undefined) $("status").textContent = text;
}

function showError(err) {
  $("error").textContent = err.message;
  $("error").hidden = false;
  setState("error");
}

function resultDrawn() {
  state.results += 1;
  document.body.dataset.results = String(state.results);
  setState("ready");
}

function fillSelect(select, values, selected) {
  select.replaceChildren(...values.map((v) => new Option(v, v, false, v === selected)));
}

async function init() {
  try {
    const info = state.info = await api("/api/info");
    $("model-info").textContent = `model ${info.model} (trained at ${info.train_size} px) · attention as loaded: ` +
      `${info.attention_loaded} · uploads up to ${info.max_upload_mb} MB / ${info.max_megapixels} MP`;
    fillSelect($("resolution"), info.resolution_choices, info.resolution);
    fillSelect($("attention"), info.attention_choices, info.attention);
    fillSelect($("windows"), info.window_choices, info.windows);
    for (const name of info.samples) $("sample").add(new Option(name, name));
    $("everything-tools").hidden = !info.everything;
    $("hq-tools").hidden = !info.hq;
    setState("idle");
  } catch (err) { showError(err); }
}

// --- images ------------------------------------------------------------------------------------

async function openImage(load, label) {
  $("error").hidden = true;
  setState("busy", `loading ${label}…`);
  try {
    const image = await load();
    const img = new Image();
    img.src = `/api/images/${image.image_id}`;  // what the model sees: orientation applied, 8-bit RGB
    await img.decode();
    for (const id of ["image", "mask", "prompts"]) { $(id).width = image.width; $(id).height = image.height; }
    $("image").getContext("2d").drawImage(img, 0, 0);
    $("stage").hidden = false;
    state.image = image;
    resetPrompts();
    setState("ready", `${label}: ${image.width}×${image.height}${image.note ? ` (${image.note})` : ""}. ` +
      "Click an object (right click: background), or drag a box.");
  } catch (err) { showError(err); }
}

const openFile = (file) => openImage(
  () => api("/api/images", {method: "POST", body: file, headers: {"Content-Type": file.type || "application/octet-stream"}}),
  file.name);
const openSample = (name) => openImage(() => api(`/api/samples/${encodeURIComponent(name)}`, {method: "POST"}), name);

// --- prompts -----------------------------------------------------------------------------------

function resetPrompts() {
  state.points = []; state.box = null; state.history = [];
  state.result = null; state.everything = null;
  clearCanvas("mask");
  drawPrompts();
  showChoices();
}

function clearCanvas(id) {
  const c = $(id);
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
}

function imageXY(event) {
  const rect = $("prompts").getBoundingClientRect();
  const clamp = (v, hi) => Math.round(Math.min(Math.max(v, 0), hi) * 100) / 100;
  return [clamp((event.clientX - rect.left) * state.image.width / rect.width, state.image.width),
          clamp((event.clientY - rect.top) * state.image.height / rect.height, state.image.height)];
}

let drag = null;

function onPointerDown(event) {
  if (!state.image || event.button > 2) return;
  $("prompts").setPointerCapture(event.pointerId);
  drag = {start: imageXY(event), end: imageXY(event), button: event.button, x: event.clientX, y: event.clientY};
}

function onPointerMove(event) {
  if (!drag) return;
  drag.end = imageXY(event);
  drawPrompts(drag);
}

function onPointerUp(event) {
  if (!drag) return;
  const d = drag;
  drag = null;
  if (Math.hypot(event.clientX - d.x, event.clientY - d.y) < 5) {
    const label = d.button === 2 || $("background").checked ? 0 : 1;
    state.points.push({x: d.start[0], y: d.start[1], label});
    state.history.push({kind: "point"});
  } else {
    const end = imageXY(event);
    const box = [Math.min(d.start[0], end[0]), Math.min(d.start[1], end[1]),
                 Math.max(d.start[0], end[0]), Math.max(d.start[1], end[1])];
    if (box[2] - box[0] < 1 || box[3] - box[1] < 1) { drawPrompts(); return; }  // a line, not a box
    state.history.push({kind: "box", previous: state.box});
    state.box = box;
  }
  predictPrompts();
}

function drawPrompts(preview) {
  const c = $("prompts"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const unit = Math.max(2, Math.max(c.width, c.height) / 250);
  ctx.lineWidth = unit;
  const rect = (b, dash) => {
    ctx.setLineDash(dash); ctx.strokeStyle = "#ffeb3b";
    ctx.strokeRect(b[0], b[1], b[2] - b[0], b[3] - b[1]);
    ctx.setLineDash([]);
  };
  if (state.box) rect(state.box, []);
  if (preview) rect([...preview.start, ...preview.end], [4 * unit, 3 * unit]);
  for (const p of state.points) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, 2.5 * unit, 0, 2 * Math.PI);
    ctx.fillStyle = p.label ? "#2e7d32" : "#c62828";
    ctx.fill();
    ctx.strokeStyle = "#fff"; ctx.stroke();
  }
  const lines = state.points.map((p) => `${p.label ? "+" : "−"} (${p.x}, ${p.y})`);
  if (state.box) lines.push(`box (${state.box.join(", ")})`);
  $("prompt-list").textContent = lines.join("\n");
}

function undo() {
  const last = state.history.pop();
  if (!last) return;
  if (last.kind === "point") state.points.pop(); else state.box = last.previous;
  predictPrompts();
}

function settings() {
  return {image_id: state.image.image_id, resolution: $("resolution").value, attention: $("attention").value,
          windows: $("windows").value};
}

// hq_token_only is sent only where the page offers it (an HQ-SAM model); other servers refuse it
function hqOption() {
  return $("hq-tools").hidden ? {} : {hq_token_only: $("hq-token-only").checked};
}

function timesText(r, work, ms) {
  const [h, w] = r.input_size;
  const encode = r.encode_ms === null ? "" : ` · encode ${r.cached ? "cached" : `${r.encode_ms} ms`}`;
  return `model input ${w}×${h} (resolution ${r.resolution}, attention ${r.attention}, ${r.windows} windows)${encode} · ` +
    `${work} ${ms} ms${r.note ? ` · ${r.note}` : ""}`;
}

let latest = 0;  // answers to superseded requests are dropped

async function predictPrompts() {
  drawPrompts();
  state.everything = null;
  if (!state.image) return;
  if (!state.points.length && !state.box) { resetPrompts(); return; }
  const ticket = ++latest;
  $("error").hidden = true;
  setState("busy", "segmenting…");
  try {
    const result = await postJSON("/api/predict", {
      ...settings(), points: state.points.map((p) => [p.x, p.y]), labels: state.points.map((p) => p.label),
      box: state.box, multimask: $("multimask").checked, ...hqOption(),
    });
    if (ticket !== latest) return;
    state.result = result;
    state.selected = result.best;
    await drawMask(result.masks[state.selected].png);
    showChoices();
    $("status").textContent = timesText(result, "decode", result.decode_ms);
    resultDrawn();
  } catch (err) { if (ticket === latest) showError(err); }
}

function showChoices() {
  const masks = state.result ? state.result.masks : [];
  $("choices").replaceChildren(...masks.map((m, k) => {
    const b = document.createElement("button");
    b.textContent = `mask ${k + 1}: score ${m.score.toFixed(3)} · ${m.area} px`;
    b.className = k === state.selected ? "selected" : "";
    b.onclick = async () => { state.selected = k; await drawMask(m.png); showChoices(); resultDrawn(); };
    return b;
  }));
  $("download-png").disabled = $("download-rle").disabled = !(state.result || state.everything);
}

// --- drawing masks -----------------------------------------------------------------------------

async function pngPixels(base64) {
  const img = new Image();
  img.src = `data:image/png;base64,${base64}`;
  await img.decode();
  const c = document.createElement("canvas");
  c.width = img.width; c.height = img.height;
  const ctx = c.getContext("2d", {willReadFrequently: true});
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, c.width, c.height);
}

async function paint(base64, colourOf) {
  const src = await pngPixels(base64), ctx = $("mask").getContext("2d");
  const out = ctx.createImageData(src.width, src.height);
  for (let i = 0; i < src.data.length; i += 4) {
    const rgba = colourOf(src.data[i], src.data[i + 1], src.data[i + 2]);
    if (rgba) out.data.set(rgba, i);
  }
  ctx.putImageData(out, 0, 0);
}

const drawMask = (base64) => paint(base64, (v) => (v > 127 ? [30, 144, 255, 140] : null));

// One colour per mask: the label image stores mask number k (1-based) as r + 256 g.
function labelColour(k) {
  const hue = (k * 0.618034) % 1, f = (n) => {
    const x = (n + hue * 12) % 12;
    return Math.round(255 * (0.6 - 0.45 * Math.max(-1, Math.min(x - 3, 9 - x, 1))));
  };
  return [f(0), f(8), f(4), 170];
}

async function segmentEverything() {
  if (!state.image) return;
  resetPrompts();
  const ticket = ++latest;
  $("error").hidden = true;
  setState("busy", "segmenting everything…");
  try {
    const result = await postJSON("/api/everything", {
      ...settings(), points_per_side: Number($("points-per-side").value), multimask: $("multimask").checked,
      ...hqOption(),
      pred_iou_thresh: Number($("iou-thresh").value), stability_score_thresh: Number($("stability-thresh").value),
    });
    if (ticket !== latest) return;
    state.everything = result;
    await paint(result.labels_png, (r, g) => (r || g ? labelColour(r + 256 * g) : null));
    showChoices();
    $("status").textContent = `${result.records.length} masks · ` + timesText(result, "generate (encode included)", result.generate_ms);
    resultDrawn();
  } catch (err) { if (ticket === latest) showError(err); }
}

// --- downloads ---------------------------------------------------------------------------------

function download(name, blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

const pngBlob = (base64) => new Blob([Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0))], {type: "image/png"});

function downloadPNG() {
  const id = state.image.image_id;
  if (state.everything) download(`${id}_everything.png`, pngBlob(state.everything.labels_png));
  else if (state.result) download(`${id}_mask.png`, pngBlob(state.result.masks[state.selected].png));
}

function downloadRLE() {
  const id = state.image.image_id;
  let json;
  if (state.everything) json = state.everything.records;
  else if (state.result) {
    const m = state.result.masks[state.selected];
    json = {image_id: id, segmentation: m.rle, area: m.area, predicted_iou: m.score,
            point_coords: state.points.map((p) => [p.x, p.y]), point_labels: state.points.map((p) => p.label),
            box: state.box, resolution: state.result.resolution, attention: state.result.attention};
  } else return;
  download(`${id}_${state.everything ? "everything" : "mask"}.json`, new Blob([JSON.stringify(json)], {type: "application/json"}));
}

// --- wiring --------------------------------------------------------------------------------------

function rerun() {
  if (state.everything) segmentEverything(); else if (state.result) predictPrompts();
}

$("file").addEventListener("change", (e) => { if (e.target.files[0]) openFile(e.target.files[0]); e.target.value = ""; });
$("sample").addEventListener("change", (e) => { if (e.target.value) openSample(e.target.value); e.target.value = ""; });
$("resolution").addEventListener("change", rerun);
$("attention").addEventListener("change", rerun);
$("windows").addEventListener("change", rerun);
$("multimask").addEventListener("change", rerun);
$("hq-token-only").addEventListener("change", rerun);
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", resetPrompts);
$("everything").addEventListener("click", segmentEverything);
$("download-png").addEventListener("click", downloadPNG);
$("download-rle").addEventListener("click", downloadRLE);
const prompts = $("prompts");
prompts.addEventListener("pointerdown", onPointerDown);
prompts.addEventListener("pointermove", onPointerMove);
prompts.addEventListener("pointerup", onPointerUp);
prompts.addEventListener("pointercancel", () => { drag = null; drawPrompts(); });
prompts.addEventListener("contextmenu", (e) => e.preventDefault());
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  if (e.dataTransfer.files[0]) openFile(e.dataTransfer.files[0]);
});
init();
