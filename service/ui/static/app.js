// The demo page: draw or pick an image, classify it, generate samples. Plain JS, no build step.
// It calls only the service's public /v1 API, as any client would.
"use strict";

const $ = (id) => document.getElementById(id);
const root = document.body.dataset.root || "";
const state = { apiKey: "", model: null, info: null, seq: 0, timer: 0 };

// ---- the API ---------------------------------------------------------------------------------

class ApiError extends Error {}

function explain(status, body, headers) {
  const err = body && body.error ? body.error : null;
  const message = err ? err.message : `the service answered HTTP ${status}`;
  const hints = {
    missing_api_key: "Enter the service's API key above.",
    invalid_api_key: "Check the API key above.",
    overloaded: "The service is busy.",
    generation_busy: "Another generation is running.",
  };
  let text = `${message.charAt(0).toUpperCase()}${message.slice(1)}`;
  if (!/[.!?]$/.test(text)) text += ".";
  if (err && hints[err.code]) text += ` ${hints[err.code]}`;
  const retry = headers.get("Retry-After");
  if (retry) text += ` Try again in ${retry} s.`;
  return `${text} (HTTP ${status}${err ? `, ${err.code}` : ""})`;
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.apiKey) headers.set("Authorization", `Bearer ${state.apiKey}`);
  let response;
  try {
    response = await fetch(`${root}/v1${path}`, { ...options, headers });
  } catch (e) {
    throw new ApiError(`Could not reach the service (${e.message}).`);
  }
  const type = response.headers.get("Content-Type") || "";
  const body = type.startsWith("application/json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(explain(response.status, body, response.headers));
  return body;
}

function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = error instanceof ApiError ? error.message : `Unexpected error: ${error}`;
  box.hidden = false;
  if (!(error instanceof ApiError)) console.warn(error);
}

const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};
const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.005 ? 0 : 1)}%`;

// ---- models ----------------------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  try {
    const { models } = await api("/models");
    showError(null);
    const current = state.model;
    select.replaceChildren(...models.map((m) => el("option", { value: m.name, textContent: m.ref })));
    select.disabled = models.length < 2;
    const keep = models.find((m) => m.name === current);
    await pickModel(keep || models[0]);
  } catch (e) {
    showError(e);
    if (String(e.message).includes("API key")) $("api-key").focus();
  }
}

async function pickModel(info) {
  state.model = info.name;
  state.info = info;
  $("model").value = info.name;
  const acc = info.metrics && info.metrics.test_accuracy;
  const spec = info.input_spec;
  $("model-info").textContent = `${info.ref}: ${info.class_names.length} classes, input ` +
    `${spec.channels}×${spec.height}×${spec.width}` +
    (acc != null ? `, test accuracy ${pct(acc)}` : "") +
    (info.calibration ? ", calibrated" : ", not calibrated (no OOD thresholds)") + ".";
  const cls = $("gen-class");
  cls.replaceChildren(cls.options[0],
    ...info.class_names.map((name, i) => el("option", { value: String(i), textContent: name })));
  $("gen-steps").placeholder = info.sampling ? `${info.sampling.steps} (default)` : "default";
  $("classify-prompt").textContent = isDigits(info)
    ? "Draw a digit with mouse or finger (light on dark, filling the square), " +
      "or pick or drop an image file."
    : `Pick or drop an image file of one of its ${info.class_names.length} classes ` +
      `(${info.class_names.slice(0, 3).join(", ")}, …), or draw on the pad.`;
  clearResult();
}

// a digits model: its classes are 0..9 in order
function isDigits(info) {
  return info.class_names.length === 10 && info.class_names.every((n, i) => n === String(i));
}

// ---- classify --------------------------------------------------------------------------------

function clearResult() {
  $("verdict").textContent = "";
  $("bars").replaceChildren();
  $("scores").replaceChildren();
  document.querySelectorAll("#result h3").forEach((h) => { h.hidden = true; });
  $("result").dataset.state = "empty";
}

async function classify(blob) {
  if (!state.info) { showError(new ApiError("No model is loaded yet: enter the API key above if the service needs one.")); return; }
  const seq = ++state.seq;
  const result = $("result");
  result.dataset.state = "busy";
  const info = state.info;
  const name = encodeURIComponent(info.name);
  const form = () => { const f = new FormData(); f.append("files", blob, "input.png"); return f; };
  const topK = Math.min(info.class_names.length, 10);
  try {
    const [pred, ood] = await Promise.all([
      api(`/models/${name}/predict?top_k=${topK}`, { method: "POST", body: form() }),
      api(`/models/${name}/ood`, { method: "POST", body: form() }),
    ]);
    if (seq !== state.seq) return; // a newer drawing is on its way
    showError(null);
    render(pred.predictions[0], ood.results[0], info);
    result.dataset.state = "done";
  } catch (e) {
    if (seq !== state.seq) return;
    showError(e);
    result.dataset.state = "error";
  }
}

function render(prediction, ood, info) {
  const verdict = $("verdict");
  const conf = pct(prediction.confidence);
  verdict.dataset.label = prediction.class_name;
  verdict.dataset.ood = String(ood.flagged);
  if (ood.flagged) {
    verdict.textContent = "This does not look like anything the model was trained on " +
      `(flagged by ${ood.flagged_by.join(", ")}); its best guess would be ` +
      `“${prediction.class_name}”, ${conf}.`;
  } else {
    // "a 7", but "Looks like: animals-nature" (a class name, not a noun to take an article)
    const what = isDigits(info) ? ` a ${prediction.class_name}` : `: ${prediction.class_name}`;
    verdict.textContent = `Looks like${what}, ${conf}` +
      (ood.flagged === null ? " (the model is not calibrated: no OOD verdict)." : ".");
  }
  verdict.className = `verdict ${ood.flagged ? "ood" : "ind"}`;
  // every class in index order, so the chart does not reshuffle between drawings
  const probs = new Map(prediction.top_k.map((c) => [c.label, c.probability]));
  const rows = info.class_names.flatMap((name, i) => {
    if (!probs.has(i)) return [];
    const p = probs.get(i);
    const fill = el("div");
    fill.style.width = `${(100 * p).toFixed(2)}%`;
    const bar = el("div", { className: i === prediction.label ? "bar top" : "bar" }, fill);
    return [el("span", { textContent: name }), bar, el("span", { className: "value", textContent: pct(p) })];
  });
  $("bars").replaceChildren(...rows);
  const calibration = info.calibration ? info.calibration.scores : {};
  $("scores").replaceChildren(...Object.entries(ood.scores).map(
    ([score, v]) => gauge(score, v, calibration[score])));
  document.querySelectorAll("#result h3").forEach((h) => { h.hidden = false; });
}

// The in-distribution density of a score (from the calibration's quantiles), the threshold
// (dashed) and this input (solid line; red when past the threshold).
function gauge(score, v, cal) {
  const words = v.percentile == null ? "" :
    `, higher than ${v.percentile.toFixed(1)}% of in-distribution inputs`;
  const thr = v.threshold == null ? "" : `; threshold ${v.threshold.toPrecision(3)}`;
  const box = el("div", { className: "score" },
    el("p", { textContent: `${score}: ${v.score.toPrecision(4)}${words}${thr}` +
      (v.flagged ? " — past it" : "") }));
  if (!cal || !cal.quantiles || cal.quantiles.length < 2) return box;
  const q = cal.quantiles;
  const W = 400, H = 46, base = 32, bins = 30;
  const lo0 = q[0], hi0 = q[q.length - 1], span = hi0 - lo0 || 1;
  const lo = lo0 - 0.08 * span, hi = hi0 + 0.08 * span;
  const x = (s) => ((Math.min(Math.max(s, lo), hi) - lo) / (hi - lo)) * W;
  const cdf = (s) => { // piecewise linear through the quantiles
    if (s <= q[0]) return 0;
    if (s >= q[q.length - 1]) return 1;
    let i = 1;
    while (q[i] < s) i++;
    const f = q[i] > q[i - 1] ? (s - q[i - 1]) / (q[i] - q[i - 1]) : 1;
    return (i - 1 + f) / (q.length - 1);
  };
  const width = (hi0 - lo0) / bins;
  const mass = Array.from({ length: bins }, (_, b) => cdf(lo0 + (b + 1) * width) - cdf(lo0 + b * width));
  const top = Math.max(...mass) || 1;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${score} of this input against the in-distribution histogram`);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, val] of Object.entries(attrs)) n.setAttribute(k, String(val));
    if (text) n.textContent = text;
    svg.append(n);
  };
  mass.forEach((m, b) => {
    const h = (m / top) * (base - 4);
    add("rect", { class: "hist", x: x(lo0 + b * width), y: base - h, width: Math.max(W / bins / 1.6, 1), height: h });
  });
  if (v.threshold != null) add("line", { class: "thr", x1: x(v.threshold), x2: x(v.threshold), y1: 0, y2: base });
  add("line", { class: v.flagged ? "mark flagged" : "mark", x1: x(v.score), x2: x(v.score), y1: 0, y2: base });
  add("text", { class: "axis", x: x(lo0), y: H - 2, "text-anchor": "middle" }, lo0.toPrecision(3));
  add("text", { class: "axis", x: x(hi0), y: H - 2, "text-anchor": "middle" }, hi0.toPrecision(3));
  if (v.score > hi || v.score < lo) {
    add("text", { class: "axis", x: v.score > hi ? W - 4 : 4, y: 10, "text-anchor": v.score > hi ? "end" : "start" },
      "input off scale");
  }
  box.append(svg);
  return box;
}

// ---- the drawing pad ---------------------------------------------------------------------------

// The pad as a PNG file. Not canvas.toBlob: Chromium encodes that in idle time, a second later.
function png(canvas) {
  const bytes = atob(canvas.toDataURL("image/png").split(",")[1]);
  return new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], { type: "image/png" });
}

function setUpPad() {
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const blank = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); };
  blank();
  let last = null;
  const point = (e) => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height)];
  };
  const line = (a, b) => {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = pad.width * 0.13; // about one pixel of an 8x8 digit
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(...a); ctx.lineTo(...b); ctx.stroke();
  };
  pad.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    pad.setPointerCapture(e.pointerId);
    clearTimeout(state.timer);
    state.seq++; // an answer still on its way is for the drawing before this stroke
    $("result").dataset.state = "drawing";
    last = point(e);
    line(last, last);
  });
  pad.addEventListener("pointermove", (e) => {
    if (!last) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) { const p = point(ev); line(last, p); last = p; }
  });
  const end = () => {
    if (!last) return;
    last = null;
    // strokes of one digit come in quick succession: classify once the hand rests
    state.timer = setTimeout(() => classify(png(pad)), 300);
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", () => { clearTimeout(state.timer); state.seq++; blank(); clearResult(); });

  const useFile = (file) => {
    if (!file) return;
    clearTimeout(state.timer);
    blank();
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => { ctx.drawImage(img, 0, 0, pad.width, pad.height); URL.revokeObjectURL(url); };
    img.onerror = () => URL.revokeObjectURL(url); // not an image the browser shows: the API says why
    img.src = url;
    classify(file);
  };
  $("file").addEventListener("change", (e) => { useFile(e.target.files[0]); e.target.value = ""; });
  pad.addEventListener("dragover", (e) => { e.preventDefault(); pad.classList.add("dragover"); });
  pad.addEventListener("dragleave", () => pad.classList.remove("dragover"));
  pad.addEventListener("drop", (e) => {
    e.preventDefault();
    pad.classList.remove("dragover");
    useFile(e.dataTransfer.files[0]);
  });
}

// ---- generate --------------------------------------------------------------------------------

async function generate(event) {
  event.preventDefault();
  const body = { num_samples: Number($("gen-n").value) };
  const label = $("gen-class").value, steps = $("gen-steps").value, seed = $("gen-seed").value;
  if (label !== "") body.label = Number(label);
  if (steps !== "") body.steps = Number(steps);
  if (seed !== "") body.seed = Number(seed);
  const run = $("gen-run"), progress = $("gen-progress"), text = $("gen-text"), grid = $("gen-grid");
  run.disabled = true;
  progress.hidden = false;
  grid.dataset.state = "busy";
  const start = performance.now();
  const tick = setInterval(() => {
    text.textContent = `Sampling… ${((performance.now() - start) / 1000).toFixed(1)} s`;
  }, 100);
  try {
    const out = await api(`/models/${encodeURIComponent(state.model)}/generate`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    showError(null);
    grid.replaceChildren(...out.samples.map((s) => el("figure", {},
      el("img", { src: `data:image/png;base64,${s.png_base64}`, alt: `sample read as ${s.class_name}`,
        title: `read as ${s.class_name} (${pct(s.confidence)}), energy ${s.energy.toFixed(2)}` }),
      el("figcaption", { textContent: `${s.class_name} ${pct(s.confidence)}` }))));
    const p = out.parameters;
    text.textContent = `${out.samples.length} samples, ${p.steps} steps, in ` +
      `${(out.duration_ms / 1000).toFixed(2)} s; seed ${p.seed} (the same seed and settings ` +
      "give the same images). Captions: the class the model reads in each sample.";
    grid.dataset.state = "done";
  } catch (e) {
    showError(e);
    text.textContent = "";
    grid.dataset.state = "error";
  } finally {
    clearInterval(tick);
    run.disabled = false;
    progress.hidden = true;
  }
}

// ---- start -----------------------------------------------------------------------------------

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.apiKey = $("api-key").value.trim();
  loadModels();
});
$("model").addEventListener("change", async (e) => {
  try {
    await pickModel(await api(`/models/${encodeURIComponent(e.target.value)}`));
  } catch (err) { showError(err); }
});
$("gen-form").addEventListener("submit", generate);
setUpPad();
loadModels();
