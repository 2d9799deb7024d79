// latentlab explorer: a page over the service's own API (no build step). A version with an ONNX form is drawn in
// the page by its generator (ONNX Runtime Web in drawing-worker.js), on every frame a slider moves; the rest, and
// every version without one, is drawn by the service. The whole state lives in the URL (#s=<base64url JSON>): a
// copied link reopens the same pictures, wherever they are drawn.
"use strict";

const $ = (id) => document.getElementById(id);
const GRID = { count: 16, nrow: 8, padding: 2, scale: 3 };
const STRIP_SCALE = 3;
const DIRECTIONS_SHOWN = 6;
const DEBOUNCE_MS = 60;  // drawn by the server: one request once a slider rests this long
const MAX_MODEL_BYTES = 64 * 2 ** 20;  // a larger generator is drawn by the server: too much for a page to fetch
const GENERATORS_KEPT = 4;  // versions whose generators the worker holds at once (the browser caches the files)

// A latent is image `index` of a seed's grid (of one class, cls, or of any; truncated by psi) plus edits: z sets
// coordinates, d moves along semantic directions, c towards classes.
// A latent found for an uploaded picture is carried as it is (v: its numbers).
const state = { model: "", version: "latest", compare: "", seed: 0, index: 0, cls: "", psi: 1, v: null, z: {}, d: {},
                c: {}, b: null, steps: 8, method: "slerp" };
let models = [];
let directions = null;  // {vectors, eigenvalues} for state.model / state.version
let classes = null;  // [{index, name, direction}] for state.model / state.version; null: the version knows none
const seedLatents = new Map();
const classLatents = new Map();

// ------------------------------------------------------------------ the API, with a key when it asks
let apiKey = sessionStorage.getItem("latentlab-api-key") || "";
let keyPrompt = null;

function askForKey() {
  keyPrompt ??= new Promise((resolve) => {
    const dialog = $("key-dialog");
    $("key-form").onsubmit = () => {
      apiKey = $("key").value.trim();
      sessionStorage.setItem("latentlab-api-key", apiKey);
      keyPrompt = null;
      resolve();
    };
    dialog.showModal();
  });
  return keyPrompt;
}

async function api(path, options = {}) {
  for (;;) {
    const headers = { ...(options.headers || {}) };
    if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401) { await askForKey(); continue; }
    if (!response.ok) throw new Error(await explain(response));
    return response;
  }
}

async function explain(response) {
  try {
    const { detail } = await response.json();
    return typeof detail === "string" ? detail : detail.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ");
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

const postJSON = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify(body) });

function setText(id, text) {  // only when it changes: a text written on every frame costs a layout each time
  if ($(id).textContent !== text) $(id).textContent = text;
}

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

// ------------------------------------------------------------------ state <-> URL
function saveState() {
  const bytes = new TextEncoder().encode(JSON.stringify(state));
  const text = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  history.replaceState(null, "", `#s=${text}`);
}

function loadState() {
  const match = location.hash.match(/^#s=([A-Za-z0-9_-]+)$/);
  if (!match) return;
  try {
    const binary = atob(match[1].replace(/-/g, "+").replace(/_/g, "/"));
    Object.assign(state, JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)))));
  } catch {
    say("the link's state could not be read; starting afresh", true);
  }
}

// ------------------------------------------------------------------ latents
const currentModel = () => models.find((m) => m.name === state.model);
const latentDim = () => currentModel().versions.at(-1).manifest.latent_dim;
// a class-conditional model's latents end in one weight per class (a one-hot): the class picker sets them
const classWeights = () => {
  const manifest = currentModel().versions.at(-1).manifest;
  return manifest.conditional ? manifest.class_names.length : 0;
};
const imageSize = () => currentModel().versions.at(-1).manifest.image_shape[2];

async function seedLatent(seed, index) {
  const key = `${seed}/${index}/${latentDim()}/${classWeights()}`;
  if (!seedLatents.has(key)) {
    const r = await api(`/latents?seed=${seed}&index=${index}&dim=${latentDim()}&classes=${classWeights()}`);
    seedLatents.set(key, (await r.json()).latent);
  }
  return seedLatents.get(key);
}

// The latent behind a cell of the seed grid: the seed's (pulled towards 0 by psi), or a class request's
async function baseLatent(latent) {
  if (latent.v) return latent.v;
  const psi = latent.psi ?? 1;
  const style = latentDim() - classWeights();  // truncation pulls z only, never the class weights
  if (!latent.cls) return (await seedLatent(latent.seed, latent.index)).map((x, k) => (k < style ? x * psi : x));
  const key = `${state.model}/${state.version}/${latent.cls}/${latent.seed}/${psi}`;
  if (!classLatents.has(key)) {
    const query = new URLSearchParams({ version: state.version, seed: latent.seed, count: GRID.count });
    if (psi !== 1) query.set("truncation", psi);
    const r = await api(`/models/${state.model}/classes/${encodeURIComponent(latent.cls)}/latents?${query}`);
    classLatents.set(key, (await r.json()).latents);
  }
  return classLatents.get(key)[latent.index];
}

// The vector a latent stands for: its cell's, coordinates set, then moved along directions and towards classes
async function vectorOf(latent) {
  const v = (await baseLatent(latent)).slice();
  for (const [i, value] of Object.entries(latent.z)) v[Number(i)] = value;
  const move = (u, amount) => { if (u) for (let k = 0; k < v.length; k++) v[k] += amount * u[k]; };
  for (const [j, amount] of Object.entries(latent.d)) move(directions?.vectors[Number(j)], amount);
  for (const [j, amount] of Object.entries(latent.c || {})) move(classes?.[Number(j)]?.direction, amount);
  return v;
}

const currentLatent = () => ({ seed: state.seed, index: state.index, cls: state.cls, psi: state.psi, v: state.v,
                               z: { ...state.z }, d: { ...state.d }, c: { ...state.c } });

// ------------------------------------------------------------------ drawing in the page
// ONNX Runtime Web in a worker (the page never stutters), loaded from this service; one generator per version,
// its file fetched once and then kept by the browser's cache (the service sends it with a strong ETag).
// WebAssembly SIMD, the least ONNX Runtime Web runs with, probed by validating one SIMD instruction
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
                                  65, 0, 253, 15, 253, 98, 11]);
const drawing = { where: new URLSearchParams(location.search).get("draw") === "server" ? "server" : "page",
                  started: null, why: "", runtime: null, threads: 1, worker: null, calls: new Map(), next: 0,
                  generators: new Map() };

function startRuntime() {  // once; true when the page can draw
  drawing.started ??= (async () => {
    if (!WebAssembly.validate?.(SIMD_PROBE)) throw new Error("this browser's WebAssembly has no SIMD");
    const runtime = await (await fetch("/static/runtime/runtime.json")).json();
    if (!runtime.installed) throw new Error(`the service has no ONNX Runtime Web (${runtime.install} installs it)`);
    drawing.worker = new Worker("/static/explorer/drawing-worker.js", { type: "module" });
    drawing.worker.onmessage = ({ data }) => {
      const call = drawing.calls.get(data.id);
      drawing.calls.delete(data.id);
      if (data.ok) call.resolve(data); else call.reject(new Error(data.error));
    };
    drawing.worker.onerror = (event) => {
      event.preventDefault();
      for (const call of drawing.calls.values()) call.reject(new Error(event.message || "the drawing worker failed"));
      drawing.calls.clear();
    };
    // threads need SharedArrayBuffer, which only a cross-origin isolated page has (the service sends COOP/COEP)
    drawing.threads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    await ask("init", { base: runtime.base, threads: drawing.threads });
    drawing.runtime = runtime;
    return true;
  })().catch((e) => { drawing.why = e.message; return false; });
  return drawing.started;
}

function ask(type, message, transfer = []) {
  const id = ++drawing.next;
  return new Promise((resolve, reject) => {
    drawing.calls.set(id, { resolve, reject });
    drawing.worker.postMessage({ id, type, ...message }, transfer);
  });
}

const versionInfo = (version) => {
  const versions = currentModel().versions;
  return version === "latest" ? versions.at(-1) : versions.find((v) => v.version === Number(version));
};

// Why the server draws `version` ("" when the page does); the first call for a version loads its generator
async function whyServer(version) {
  if (drawing.where === "server") return "as asked (?draw=server)";
  if (!(await startRuntime())) return drawing.why;
  const { version: number, manifest } = versionInfo(version);
  const file = manifest.files["generator.onnx"];
  if (!file) return `v${number} has no ONNX form (python -m trainer.upgrade adds one)`;
  if (file.size > MAX_MODEL_BYTES) {
    return `v${number}'s generator is ${(file.size / 2 ** 20).toFixed(0)} MB, too large to fetch into a page`;
  }
  const key = `${state.model}/${number}`;
  const loaded = drawing.generators.get(key);
  drawing.generators.delete(key);  // re-inserted last: the map runs from least to most recently used
  if (loaded) {
    drawing.generators.set(key, loaded);
  } else {
    if (drawing.generators.size >= GENERATORS_KEPT) {  // the least recently used one leaves the worker
      const [oldest] = drawing.generators.keys();
      drawing.generators.delete(oldest);
      ask("unload", { key: oldest }).catch(() => {});
    }
    drawing.generators.set(key, (async () => {
      const response = await api(`/models/${state.model}/versions/${number}/files/generator.onnx`);
      const bytes = await response.arrayBuffer();
      await ask("load", { key, bytes }, [bytes]);
      return "";
    })().catch((e) => `v${number}'s generator did not load in the page (${e.message})`));
  }
  return drawing.generators.get(key);
}

// The images of `latents` under `version`, by its generator in the worker: RGBA, one image after another
async function generateHere(version, latents) {
  const { version: number, manifest } = versionInfo(version);
  const width = manifest.latent_dim, classes = manifest.conditional ? manifest.class_names.length : 0;
  const flat = new Float32Array(latents.length * width);
  latents.forEach((latent, n) => flat.set(latent, n * width));
  const { pixels } = await ask("run", { key: `${state.model}/${number}`, latents: flat, count: latents.length,
                                        style: width - classes, classes, shape: manifest.image_shape },
                               [flat.buffer]);
  return { pixels, shape: manifest.image_shape };
}

// Images side by side as the service's grids lay them out (shared.imaging.grids.make_grid: black padding)
function tile({ pixels, shape: [, height, width] }, count, nrow, padding) {
  const rows = Math.ceil(count / nrow);
  const W = nrow * (width + padding) + padding, H = rows * (height + padding) + padding;
  const out = new ImageData(W, H);
  for (let k = 3; k < out.data.length; k += 4) out.data[k] = 255;
  for (let n = 0; n < count; n++) {
    const x0 = padding + (n % nrow) * (width + padding), y0 = padding + Math.floor(n / nrow) * (height + padding);
    for (let y = 0; y < height; y++) {
      const from = (n * height * width + y * width) * 4;
      out.data.set(pixels.subarray(from, from + width * 4), ((y0 + y) * W + x0) * 4);
    }
  }
  return out;
}

// The path between two latents as the service walks it (service.operations.interpolation): z along the great
// circle (slerp) or the straight line (lerp), with its length changing linearly; the class weights straight
function interpolate(a, b, steps, method) {
  const t = Array.from({ length: steps }, (_, i) => (i === steps - 1 ? 1 : i * (1 / (steps - 1))));
  const lerp = () => t.map((s) => a.map((x, k) => (1 - s) * x + s * b[k]));
  if (method === "lerp") return lerp();
  const norm = (v) => Math.sqrt(v.reduce((sum, x) => sum + x * x, 0));
  const [na, nb] = [norm(a), norm(b)];
  if (na === 0 || nb === 0) return lerp();
  const ua = a.map((x) => x / na);
  let ub = b.map((x) => x / nb);
  let angle = Math.acos(Math.min(1, Math.max(-1, ua.reduce((sum, x, k) => sum + x * ub[k], 0))));
  const PARALLEL = 1e-6;
  let direction;
  if (angle < PARALLEL) {
    direction = () => ua;
  } else if (Math.PI - angle < PARALLEL) {  // antipodal: half a turn through a fixed orthogonal direction
    const e = ua.map(() => 0);
    e[ua.reduce((best, x, k) => (Math.abs(x) < Math.abs(ua[best]) ? k : best), 0)] = 1;
    const dot = e.reduce((sum, x, k) => sum + x * ua[k], 0);
    const w = e.map((x, k) => x - dot * ua[k]);
    ub = w.map((x) => x / norm(w));
    angle = Math.PI;
    direction = (s) => ua.map((x, k) => Math.cos(s * angle) * x + Math.sin(s * angle) * ub[k]);
  } else {
    direction = (s) => ua.map((x, k) => (Math.sin((1 - s) * angle) * x + Math.sin(s * angle) * ub[k]) / Math.sin(angle));
  }
  return t.map((s) => direction(s).map((x) => ((1 - s) * na + s * nb) * x));
}

function interpolateLatents(start, end, steps, method) {
  const style = latentDim() - classWeights();
  const z = interpolate(start.slice(0, style), end.slice(0, style), steps, method);
  const weights = classWeights() ? interpolate(start.slice(style), end.slice(style), steps, "lerp") : z.map(() => []);
  return z.map((v, i) => [...v, ...weights[i]]);
}

// ------------------------------------------------------------------ pictures
const shown = new Map();  // element id -> number of the latest drawing, so a late one never replaces a newer one

async function show(imgId, request) {
  const ticket = (shown.get(imgId) || 0) + 1;
  shown.set(imgId, ticket);
  const img = $(imgId);
  img.dataset.state = "loading";
  try {
    const blob = await (await request()).blob();
    if (shown.get(imgId) !== ticket) return;
    URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    await img.decode();
    img.dataset.state = "ready";
    img.hidden = false;
  } catch (e) {
    if (shown.get(imgId) === ticket) { img.dataset.state = "error"; say(e.message, true); }
  }
}

// Draw into a canvas at the pictures' own size, shown `scale` times larger (pixelated; null: as CSS sizes it): from
// the page's generator (`here`: ImageData) or from the service's PNG (`remote`: a response)
async function paint(canvasId, scale, here, remote) {
  const ticket = (shown.get(canvasId) || 0) + 1;
  shown.set(canvasId, ticket);
  const canvas = $(canvasId);
  canvas.dataset.state = "loading";
  try {
    const picture = here ? await here() : await createImageBitmap(await (await remote()).blob());
    if (shown.get(canvasId) !== ticket) return false;
    if (canvas.width !== picture.width || canvas.height !== picture.height) {
      Object.assign(canvas, { width: picture.width, height: picture.height });
      if (scale) canvas.style.width = `${picture.width * scale}px`;
    }
    const context = canvas.getContext("2d");
    if (here) context.putImageData(picture, 0, 0); else context.drawImage(picture, 0, 0);
    canvas.dataset.state = "ready";
    canvas.dataset.drawnBy = here ? "page" : "server";
    canvas.hidden = false;
    return true;
  } catch (e) {
    if (shown.get(canvasId) === ticket) { canvas.dataset.state = "error"; say(e.message, true); }
    return false;
  }
}

function renderSeedGrid() {
  const body = { model: state.model, version: state.version, seed: state.seed, count: GRID.count, nrow: GRID.nrow,
                 padding: GRID.padding, scale: GRID.scale };
  if (state.cls) body.class = state.cls;
  if (state.psi !== 1) body.truncation = state.psi;
  return show("seed-grid", () => postJSON("/generate", body));
}

// One latent's image under `version`, in the page where it can draw it
async function drawOne(canvasId, version, latent) {
  const why = await whyServer(version);
  const here = why ? null : async () => tile(await generateHere(version, [latent]), 1, 1, 0);
  const remote = () => postJSON("/generate", { model: state.model, version, latent, padding: 0, scale: 1 });
  return { why, drawn: await paint(canvasId, null, here, remote) };
}

// Every frame drawn, for the benchmark and the browser tests: the model, the latent, when the change that asked
// for it happened, when it reached the canvas, and who drew it
window.latentlabFrames = [];
window.latentlabStrips = [];  // every path drawn: its two ends, and who drew it
let lastChange = performance.now();
let drawnHere = false;  // whether the current version is drawn in the page: sliders then draw on every frame

// `everyFrame`: called on an animation frame while a slider moves; a compared version the server draws then waits
// for the slider to rest, as it would alone (one request per pause, not one per frame)
let comparePending = null;
async function renderCurrent(everyFrame = false) {
  if (!everyFrame) saveState();  // a drag saves once it rests: replacing the URL costs a frame's worth of time
  const changedAt = lastChange;
  const latent = await vectorOf(currentLatent());
  setText("current-caption", `${state.model} ${state.version === "latest" ? "latest" : "v" + state.version}`);
  const jobs = [drawOne("current", state.version, latent).then(({ why, drawn }) => {
    drawnHere = !why;
    setText("drawn-by", why ? `drawn by the server: ${why}` :
      `drawn in this page (ONNX Runtime Web ${drawing.runtime.version}, ${drawing.threads} ` +
      `thread${drawing.threads > 1 ? "s" : ""})`);
    if (drawn) latentlabFrames.push({ model: state.model, latent: latent.join(","), changedAt,
                                      drawnAt: performance.now(), by: why ? "server" : "page" });
  })];
  $("compare-figure").hidden = !state.compare;
  if (state.compare) {
    $("compare-caption").textContent = `${state.model} v${state.compare}`;
    const compare = Number(state.compare);
    jobs.push(whyServer(compare).then((why) => {
      clearTimeout(comparePending);
      if (!why || !everyFrame) return drawOne("compared", compare, latent);
      const whenResting = () => {  // a frame still being drawn: wait for it too
        if (framing || wanted) comparePending = setTimeout(whenResting, DEBOUNCE_MS);
        else drawOne("compared", compare, latent);
      };
      comparePending = setTimeout(whenResting, DEBOUNCE_MS);
    }));
  }
  jobs.push(renderStrip());
  await Promise.all(jobs);
}

// The path as the state is now (its model, version, steps, method and two ends): a drawing that takes time shows
// what was asked, never a mix of the state before a change and after it
function pathNow() {
  const { model, version, steps, method } = state;
  const ends = Promise.all([vectorOf(currentLatent()), vectorOf(state.b)]);
  ends.catch(() => {});  // a failure is reported where the ends are awaited, not as an unhandled rejection before
  return { model, version, steps, method, ends };
}

async function interpolation(format, scale, path = pathNow()) {
  const [start, end] = await path.ends;
  return postJSON("/interpolate", { model: path.model, version: path.version, start: { latent: start },
                                    end: { latent: end }, steps: path.steps, method: path.method, format, scale,
                                    padding: 2, frame_ms: 100 });
}

async function renderStrip() {
  const ready = Boolean(state.b);
  $("download-gif").disabled = $("download-webp").disabled = !ready;
  $("b-info").textContent = ready ? (state.b.v ? "B is your picture's latent" :
                                     `B is image ${state.b.index} of seed ${state.b.seed}`) +
    (state.b.cls && !state.b.v ? ` (${state.b.cls})` : "") +
    (Object.keys(state.b.z).length + Object.keys(state.b.d).length + Object.keys(state.b.c || {}).length ? ", edited" : "") :
    "Set a second latent (B) to see the path.";
  if (!ready) { $("strip").hidden = true; return; }
  const path = pathNow();
  const why = await whyServer(path.version);
  const here = why ? null : async () => {
    const [start, end] = await path.ends;
    return tile(await generateHere(path.version, interpolateLatents(start, end, path.steps, path.method)),
                path.steps, path.steps, 2);
  };
  if (await paint("strip", STRIP_SCALE, here, () => interpolation("png", 1, path))) {
    const [start, end] = await path.ends;
    latentlabStrips.push({ start: start.join(","), end: end.join(","), by: why ? "server" : "page" });
  }
}

async function download(format) {
  try {
    const blob = await (await interpolation(format, 4)).blob();
    const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob),
                                                              download: `${state.model}-interpolation.${format}` });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (e) {
    say(e.message, true);
  }
}

// A slider moved. Drawn in the page: at once when nothing is being drawn, then once per animation frame while it
// keeps moving (never two drawings at once, never more than the display shows, the last position always drawn
// last). Drawn by the server: one request once the slider rests for DEBOUNCE_MS.
let pending = null;
let framing = null;
let wanted = false;
function renderSoon() {
  lastChange = performance.now();
  if (!drawnHere) {
    clearTimeout(pending);
    pending = setTimeout(renderCurrent, DEBOUNCE_MS);
    return;
  }
  wanted = true;
  if (!framing) nextFrame();
}

async function nextFrame() {
  if (!wanted || framing) return;
  wanted = false;
  framing = renderCurrent(true);
  try { await framing; } finally { framing = null; }
  if (wanted) requestAnimationFrame(nextFrame);
  else saveState();  // at rest: the link holds where the slider stopped
}

// ------------------------------------------------------------------ sliders
function sliderRow({ label, id, min, max, step, value, onChange, onRemove }) {
  const row = document.createElement("div");
  row.className = "slider";
  row.innerHTML = `<label for="${id}">${label}</label>
    <input id="${id}" type="range" min="${min}" max="${max}" step="${step}">
    <input id="${id}-value" type="number" step="${step}" aria-label="${label} value">`;
  const [range, number] = row.querySelectorAll("input");
  range.value = value;
  number.value = Number(Number(value).toFixed(3));  // shown rounded; the state keeps the exact value
  range.addEventListener("input", () => { number.value = range.value; onChange(Number(range.value)); });
  number.addEventListener("change", () => {
    if (Number.isFinite(Number(number.value))) { range.value = number.value; onChange(Number(number.value)); }
  });
  if (onRemove) {
    const remove = Object.assign(document.createElement("button"), { type: "button", className: "remove",
                                                                     textContent: "×" });
    remove.setAttribute("aria-label", `remove ${label}`);
    remove.addEventListener("click", () => { row.remove(); onRemove(); });
    row.append(remove);
  }
  return row;
}

function buildClassSliders() {
  const box = $("class-sliders");
  box.replaceChildren();
  if (!classes) { box.textContent = "This model knows no classes."; return; }
  classes.forEach((c, j) => {
    box.append(sliderRow({ label: c.name, id: `cls-${j}`, min: -6, max: 6, step: 0.1, value: state.c[j] ?? 0,
                           onChange: (v) => { if (v) state.c[j] = v; else delete state.c[j]; renderSoon(); } }));
    box.lastChild.title = `share of the model's samples ${(100 * c.share).toFixed(1)}%` +
      (c.accuracy === null ? "" : `; the boundary separates it ${(100 * c.accuracy).toFixed(0)}% of the time`);
  });
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  a.forEach((x, i) => { dot += x * b[i]; na += x * x; nb += b[i] * b[i]; });
  return dot / Math.sqrt(na * nb || 1);
}

// What a direction does, in words: the classes it moves towards most on each side (by the cosine between it and
// each class's direction in latent space), where the version knows its classes
function meaningOf(vector) {
  if (!classes?.length) return "";
  const ranked = classes.map((c) => [cosine(vector, c.direction), c.name]).sort((x, y) => y[0] - x[0]);
  const [[up, upName], [down, downName]] = [ranked[0], ranked[ranked.length - 1]];
  return `+ towards ${upName} (cos ${up.toFixed(2)}), − towards ${downName} (cos ${down.toFixed(2)})`;
}

function buildDirectionSliders() {
  const box = $("directions");
  box.replaceChildren();
  if (!directions) { box.textContent = "This model has no semantic directions."; return; }
  directions.eigenvalues.slice(0, DIRECTIONS_SHOWN).forEach((ev, j) => {
    box.append(sliderRow({ label: `d${j}`, id: `dir-${j}`, min: -10, max: 10, step: 0.1, value: state.d[j] ?? 0,
                           onChange: (v) => { if (v) state.d[j] = v; else delete state.d[j]; renderSoon(); } }));
    box.lastChild.title = `eigenvalue ${ev.toFixed(3)}: how strongly the first layer responds to this direction`;
    const meaning = meaningOf(directions.vectors[j]);
    box.append(Object.assign(document.createElement("p"), {
      className: "meaning hint", id: `dir-${j}-meaning`,
      textContent: meaning || `direction ${j + 1} of ${DIRECTIONS_SHOWN}, strongest first: move it to see what it changes`,
    }));
  });
}

async function buildCoordinateSliders() {
  const box = $("coordinates");
  box.replaceChildren();
  for (const i of Object.keys(state.z)) box.append(coordinateSlider(Number(i)));
}

function coordinateSlider(i) {
  return sliderRow({ label: `z[${i}]`, id: `z-${i}`, min: -4, max: 4, step: 0.05, value: state.z[i],
                     onChange: (v) => { state.z[i] = v; renderSoon(); },
                     onRemove: () => { delete state.z[i]; renderSoon(); } });
}

async function addCoordinate(event) {
  event.preventDefault();
  const i = Number($("coordinate").value);
  if (!Number.isInteger(i) || i < 0 || i >= latentDim()) {
    say(`coordinates of ${state.model} are 0..${latentDim() - 1}`, true);
    return;
  }
  if (!(i in state.z)) {
    state.z[i] = (await baseLatent(currentLatent()))[i];  // starts where the latent is
    $("coordinates").append(coordinateSlider(i));
    saveState();
  }
}

// ------------------------------------------------------------------ model and version
function fillVersions() {
  const versions = currentModel().versions.map((v) => v.version);
  const options = (select, first) => {
    select.replaceChildren(...[first, ...versions.map(String)].filter((v) => v !== null).map((v) =>
      Object.assign(document.createElement("option"), { value: v, textContent: v === "" ? "none" : v === "latest" ? "latest" : `v${v}` })));
  };
  options($("version"), "latest");
  options($("compare"), "");
  if (!["latest", ...versions.map(String)].includes(String(state.version))) state.version = "latest";
  $("version").value = String(state.version);
  if (state.compare && !versions.map(String).includes(String(state.compare))) state.compare = "";
  $("compare").value = String(state.compare);
}

async function loadClasses() {
  try {
    const r = await api(`/models/${state.model}/classes?version=${state.version}`);
    classes = (await r.json()).classes;
  } catch {
    classes = null;  // a model trained on unlabelled images: no class picker, no class sliders
  }
  $("class").replaceChildren(new Option("any", ""), ...(classes || []).map((c) => new Option(c.name, c.name)));
  $("class").disabled = !classes;
  if (!classes?.some((c) => c.name === state.cls)) state.cls = "";
  $("class").value = state.cls;
  buildClassSliders();
}

async function loadDirections() {
  try {
    const r = await api(`/models/${state.model}/directions?version=${state.version}&k=${DIRECTIONS_SHOWN}`);
    const found = await r.json();
    directions = { vectors: found.directions, eigenvalues: found.eigenvalues };
  } catch {
    directions = null;
  }
}

async function selectModel(keepLatent) {
  fillVersions();
  if (!keepLatent) Object.assign(state, { z: {}, d: {}, c: {}, b: null });
  await Promise.all([loadDirections(), loadClasses()]);
  buildDirectionSliders();  // once both are known: the classes name the directions
  await buildCoordinateSliders();
  $("seed").value = state.seed;
  $("index").value = state.index;
  $("psi").value = $("psi-value").value = state.psi;
  $("steps").value = state.steps;
  $("method").value = state.method;
  await Promise.all([renderSeedGrid(), renderCurrent()]);
}

function pickFromGrid(event) {
  const img = $("seed-grid");
  const rect = img.getBoundingClientRect();
  const x = (event.clientX - rect.left) * img.naturalWidth / rect.width / GRID.scale;
  const y = (event.clientY - rect.top) * img.naturalHeight / rect.height / GRID.scale;
  const cell = imageSize() + GRID.padding;
  const col = Math.min(GRID.nrow - 1, Math.max(0, Math.floor((x - GRID.padding / 2) / cell)));
  const row = Math.max(0, Math.floor((y - GRID.padding / 2) / cell));
  pick(state.seed, Math.min(GRID.count - 1, row * GRID.nrow + col));
}

async function pick(seed, index) {
  Object.assign(state, { seed, index, v: null, d: {}, c: {} });
  $("uploaded-figure").hidden = true;
  $("index").value = index;
  const base = await baseLatent(currentLatent());
  for (const i of Object.keys(state.z)) state.z[i] = base[i];  // sliders stay, at the new latent's values
  buildDirectionSliders();
  buildClassSliders();
  await buildCoordinateSliders();
  await renderCurrent();
}

async function projectUpload() {
  const file = $("project-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("model", state.model);
  form.append("version", state.version);
  form.append("steps", Math.max(0, Math.floor(Number($("project-steps").value) || 0)));
  form.append("file", file);
  say("finding the picture's latent...");
  try {
    const found = await (await api("/project", { method: "POST", body: form })).json();
    URL.revokeObjectURL($("uploaded").src);
    $("uploaded").src = URL.createObjectURL(file);
    $("uploaded-figure").hidden = false;
    Object.assign(state, { v: found.latent, d: {}, c: {} });
    for (const i of Object.keys(state.z)) state.z[i] = found.latent[i];  // sliders stay, at its values
    buildDirectionSliders();
    buildClassSliders();
    await buildCoordinateSliders();
    const { start, final } = found.losses;
    say(`found (from the ${found.start}, ${found.steps} steps, ${found.seconds.toFixed(1)} s): pixel error ` +
        `${start.pixel.toFixed(4)} -> ${final.pixel.toFixed(4)}`);
    await renderCurrent();
  } catch (e) {
    say(e.message, true);
  }
}

async function scoreUploads() {
  const files = $("upload").files;
  if (!files.length) return;
  const form = new FormData();
  form.append("model", state.model);
  form.append("version", state.version);
  for (const f of files) form.append("files", f);
  try {
    const { scores } = await (await api("/score", { method: "POST", body: form })).json();
    $("scores").tBodies[0].replaceChildren(...scores.map((s) => {
      const tr = document.createElement("tr");
      tr.append(...[s.filename, s.logit.toFixed(3), s.probability.toFixed(3)].map((t) =>
        Object.assign(document.createElement("td"), { textContent: t })));
      return tr;
    }));
    $("scores").hidden = false;
  } catch (e) {
    say(e.message, true);
  }
}

// ------------------------------------------------------------------ wiring
async function start() {
  loadState();
  try {
    models = (await (await api("/models")).json()).models;
  } catch (e) {
    say(`cannot list the models: ${e.message}`, true);
    return;
  }
  if (!models.length) { say("the store has no model yet: publish one with python -m trainer", true); return; }
  $("model").replaceChildren(...models.map((m) => Object.assign(document.createElement("option"),
                                                                { value: m.name, textContent: m.name })));
  const fromLink = models.some((m) => m.name === state.model);
  if (!fromLink) state.model = models[0].name;
  $("model").value = state.model;

  $("model").addEventListener("change", () => { state.model = $("model").value; state.version = "latest";
                                                state.compare = ""; selectModel(false); });
  $("version").addEventListener("change", () => { state.version = $("version").value === "latest" ? "latest"
                                                    : Number($("version").value); selectModel(true); });
  $("compare").addEventListener("change", () => { state.compare = $("compare").value; renderCurrent(); });
  $("seed").addEventListener("change", () => { state.seed = Math.max(0, Math.floor(Number($("seed").value) || 0));
                                                renderSeedGrid(); pick(state.seed, state.index); });
  $("seed-random").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 1e6);
                                                     $("seed").dispatchEvent(new Event("change")); });
  $("index").addEventListener("change", () => pick(state.seed, Math.min(GRID.count - 1,
                                                   Math.max(0, Math.floor(Number($("index").value) || 0)))));
  $("seed-grid").addEventListener("click", pickFromGrid);
  $("class").addEventListener("change", () => { state.cls = $("class").value; renderSeedGrid();
                                                pick(state.seed, state.index); });
  const setPsi = (value) => {
    state.psi = Math.min(1, Math.max(0.05, Number(value) || 1));
    $("psi").value = $("psi-value").value = state.psi;
    renderSeedGrid();
    pick(state.seed, state.index);
  };
  $("psi").addEventListener("change", () => setPsi($("psi").value));
  $("psi-value").addEventListener("change", () => setPsi($("psi-value").value));
  $("add-coordinate").addEventListener("submit", addCoordinate);
  $("reset").addEventListener("click", () => pick(state.seed, state.index));
  $("set-b").addEventListener("click", () => { state.b = currentLatent(); renderCurrent(); });
  $("steps").addEventListener("change", () => { state.steps = Math.min(32, Math.max(2, Number($("steps").value) || 8));
                                                 renderCurrent(); });
  $("method").addEventListener("change", () => { state.method = $("method").value; renderCurrent(); });
  $("download-gif").addEventListener("click", () => download("gif"));
  $("download-webp").addEventListener("click", () => download("webp"));
  $("upload").addEventListener("change", scoreUploads);
  $("project-file").addEventListener("change", projectUpload);
  $("copy-link").addEventListener("click", async () => {
    saveState();
    try { await navigator.clipboard.writeText(location.href); say("link copied: it reopens exactly this view"); }
    catch { say(`copy this link: ${location.href}`); }
  });
  await selectModel(fromLink);
  document.body.dataset.ready = "true";
}

start();
