// gan-serve web page: generate a grid, click two images, watch them interpolate, download.
"use strict";
const $ = (id) => document.getElementById(id);
let shown = null; // the request whose images are on screen
let busy = 0;

function headers() {
  const h = { "content-type": "application/json" };
  const key = $("key").value.trim();
  if (key) h.authorization = "Bearer " + key;
  return h;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function setBusy(delta) {
  busy += delta;
  document.body.classList.toggle("busy", busy > 0);
}

async function call(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  if (r.status === 401) $("key-label").hidden = false;
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

async function loadModels() {
  try {
    const models = await (await call("GET", "/models")).json();
    $("model").replaceChildren(...models.map((m) => new Option(m.name, m.name)));
    $("model").dataset.models = JSON.stringify(models);
    describeModel();
    $("generate").disabled = false;
    if (!shown) await generate(); // a grid on open: the form's seeds, not an empty page
  } catch (e) {
    status(`Could not list the models: ${e.message}`, true);
  }
}

function describeModel() {
  const models = JSON.parse($("model").dataset.models || "[]");
  const m = models.find((x) => x.name === $("model").value);
  if (!m) return;
  $("model-info").textContent = `${m.architecture} · ${m.backend}`;
  $("placeholder").hidden = !m.placeholder;
}

function request() {
  return { seed: Number($("seed").value), n: Number($("n").value),
           truncation: Number($("psi").value), model: $("model").value || null };
}

async function generate(ev) {
  if (ev) ev.preventDefault();
  const req = request();
  status("Generating…");
  setBusy(1);
  try {
    const r = await call("POST", "/generate", { ...req, layout: "json" });
    const data = await r.json();
    const figures = data.images.map((item) => {
      const fig = document.createElement("figure");
      fig.dataset.seed = item.seed;
      fig.title = `seed ${item.seed}: click two images to interpolate`;
      const img = new Image();
      img.alt = `seed ${item.seed}`;
      img.src = `data:image/png;base64,${item.image}`;
      const cap = document.createElement("figcaption");
      cap.textContent = item.seed;
      fig.append(img, cap);
      fig.addEventListener("click", () => pick(fig));
      return fig;
    });
    $("grid").replaceChildren(...figures);
    shown = { ...req, seeds: data.seeds };
    $("downloads").hidden = false;
    status(`${data.images.length} images, seeds ${data.seeds[0]}–${data.seeds.at(-1)}, ψ ${req.truncation.toFixed(2)} ` +
           `· ${data.backend}. Click two images to watch the path between them.`);
  } catch (e) {
    status(`Error: ${e.message}`, true);
  } finally {
    setBusy(-1);
  }
}

async function pick(fig) {
  fig.classList.toggle("selected");
  const chosen = [...document.querySelectorAll("figure.selected")];
  if (chosen.length < 2) return;
  chosen.forEach((f) => f.classList.remove("selected"));
  const seeds = chosen.map((f) => Number(f.dataset.seed));
  if (fig === chosen[0]) seeds.reverse(); // keep the click order: from the first, to the second
  status(`Interpolating ${seeds[0]} → ${seeds[1]}…`);
  setBusy(1);
  try {
    const r = await call("POST", "/interpolate", { seeds, steps: 24, loop: true, format: "gif",
      truncation: shown.truncation, model: shown.model });
    const url = URL.createObjectURL(await r.blob());
    const img = $("interpolation");
    URL.revokeObjectURL(img.src);
    img.dataset.seeds = seeds.join(",");
    img.src = url;
    $("interp-seeds").textContent = `seed ${seeds[0]} ↔ seed ${seeds[1]}`;
    const a = $("download-gif");
    a.href = url;
    a.download = `interpolation-${seeds[0]}-${seeds[1]}.gif`;
    $("interp-panel").hidden = false;
    status(`Interpolation ${seeds[0]} ↔ ${seeds[1]}: slerp, 24 frames per leg, looping.`);
  } catch (e) {
    status(`Error: ${e.message}`, true);
  } finally {
    setBusy(-1);
  }
}

async function download(layout) {
  if (!shown) return;
  setBusy(1);
  try {
    const { seed, n, truncation, model } = shown;
    const r = await call("POST", "/generate", { seed, n, truncation, model, layout });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = `seeds-${r.headers.get("x-seeds")}.${layout === "zip" ? "zip" : "png"}`;
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    status(`Error: ${e.message}`, true);
  } finally {
    setBusy(-1);
  }
}

$("psi").addEventListener("input", () => { $("psi-value").textContent = Number($("psi").value).toFixed(2); });
$("psi").addEventListener("change", () => { if (shown) generate(); });
$("dice").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 100000); generate(); });
$("controls").addEventListener("submit", generate);
$("model").addEventListener("change", describeModel);
$("download-grid").addEventListener("click", () => download("grid"));
$("download-zip").addEventListener("click", () => download("zip"));
$("key").addEventListener("change", loadModels);
loadModels();
