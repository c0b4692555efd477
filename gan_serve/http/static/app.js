// gan-serve web page: generate a grid, click two images, watch them interpolate.
"use strict";
const $ = (id) => document.getElementById(id);
let lastRequest = null;
let selected = [];

function headers() {
  const h = { "content-type": "application/json" };
  const key = $("key").value;
  if (key) h.authorization = "Bearer " + key;
  return h;
}

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (r.status === 401) $("key-label").hidden = false;
  if (!r.ok) {
    let msg = r.statusText;
    try { msg = (await r.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

function status(text) { $("status").textContent = text; }

async function loadModels() {
  try {
    const r = await fetch("/models", { headers: headers() });
    if (r.status === 401) { $("key-label").hidden = false; $("model-info").textContent = "API key needed"; return; }
    const models = await r.json();
    $("model").innerHTML = "";
    for (const m of models) {
      const o = document.createElement("option");
      o.value = m.name;
      o.textContent = m.name + (m.placeholder ? " (untrained placeholder)" : "");
      $("model").append(o);
    }
    const m = models[0];
    if (m) $("model-info").textContent = `${m.architecture} · ${m.backend}`;
  } catch (e) { $("model-info").textContent = "could not list models: " + e.message; }
}

function request() {
  return { seed: Number($("seed").value), n: Number($("n").value),
           truncation: Number($("psi").value), model: $("model").value || null };
}

async function generate(ev) {
  ev.preventDefault();
  const req = request();
  status("generating…");
  $("generate").disabled = true;
  try {
    const data = await (await post("/generate", { ...req, layout: "json" })).json();
    const grid = $("grid");
    grid.innerHTML = "";
    selected = [];
    for (const item of data.images) {
      const fig = document.createElement("figure");
      fig.dataset.seed = item.seed;
      fig.innerHTML = `<img alt="seed ${item.seed}" src="data:image/png;base64,${item.image}"><figcaption>seed ${item.seed}</figcaption>`;
      fig.addEventListener("click", () => pick(fig));
      grid.append(fig);
    }
    lastRequest = req;
    $("download-grid").disabled = $("download-zip").disabled = false;
    status(`${data.images.length} images · ${data.model} · ${data.backend}. Click two to interpolate.`);
  } catch (e) { status("error: " + e.message); }
  $("generate").disabled = false;
}

async function pick(fig) {
  fig.classList.toggle("selected");
  selected = [...document.querySelectorAll("figure.selected")].map((f) => Number(f.dataset.seed));
  if (selected.length < 2) return;
  const seeds = selected.slice(0, 2);
  document.querySelectorAll("figure.selected").forEach((f) => f.classList.remove("selected"));
  selected = [];
  status(`interpolating ${seeds[0]} → ${seeds[1]}…`);
  try {
    const blob = await (await post("/interpolate", { seeds, steps: 16, loop: true, format: "gif",
      truncation: Number($("psi").value), model: $("model").value || null })).blob();
    const url = URL.createObjectURL(blob);
    const img = $("interpolation");
    img.dataset.seeds = seeds.join(",");
    img.src = url;
    $("download-gif").href = url;
    $("download-gif").download = `interpolation-${seeds[0]}-${seeds[1]}.gif`;
    $("interp-seeds").textContent = `seed ${seeds[0]} ↔ ${seeds[1]}`;
    $("interp-panel").hidden = false;
    status(`interpolation ${seeds[0]} ↔ ${seeds[1]} (slerp, looping)`);
  } catch (e) { status("error: " + e.message); }
}

async function download(layout, ext) {
  if (!lastRequest) return;
  const blob = await (await post("/generate", { ...lastRequest, layout })).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `seed${lastRequest.seed}-n${lastRequest.n}.${ext}`;
  a.click();
}

$("psi").addEventListener("input", () => { $("psi-value").textContent = Number($("psi").value).toFixed(2); });
$("controls").addEventListener("submit", generate);
$("download-grid").addEventListener("click", () => download("grid", "png"));
$("download-zip").addEventListener("click", () => download("zip", "zip"));
$("key").addEventListener("change", loadModels);
loadModels();
