// gan-serve web page: generate a grid, click two images, watch them interpolate, download;
// drop an image to project it; move sliders along the server's directions; download a video.
"use strict";
const $ = (id) => document.getElementById(id);
const SLIDERS = 6; // the top directions of a file get a slider each
let shown = null; // the request whose images are on screen
let busy = 0;
let subject = null; // what the sliders edit: {seed} or {latent, label} (a projection)
let path = null; // the interpolation on screen: its request body and file name
let directions = []; // GET /directions
let rendering = 0; // the latest edit render: older answers are dropped
let timer = null;

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
    directions = await (await call("GET", "/directions")).json();
    $("model").replaceChildren(...models.map((m) => new Option(m.name, m.name)));
    $("model").dataset.models = JSON.stringify(models);
    $("dirs-file").replaceChildren(...directions.map((d) => new Option(d.name, d.name)));
    $("dirs-file").hidden = directions.length < 2;
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
  $("download-video").hidden = !m.video; // the server has the video extra
  $("projected").replaceChildren(); // projections belong to the model that made them
  if (subject && subject.latent) subject = null;
  buildSliders();
}

function currentModel() {
  return JSON.parse($("model").dataset.models || "[]").find((x) => x.name === $("model").value);
}

function buildSliders() {
  // the chosen file's directions with the highest scores, for the model's z_dim only
  const file = directions.find((d) => d.name === $("dirs-file").value);
  const m = currentModel();
  $("edit-panel").hidden = !file || !m || file.z_dim !== m.z_dim;
  if ($("edit-panel").hidden) return;
  const top = [...file.directions].sort((a, b) => b.score - a.score).slice(0, SLIDERS);
  const what = file.method === "ganspace" ? (s) => `${(100 * s).toFixed(1)}% of the variance`
                                           : (s) => `accuracy ${s.toFixed(2)}`;
  $("sliders").replaceChildren(...top.map((d) => {
    const label = document.createElement("label");
    label.title = what(d.score);
    const name = document.createElement("span");
    const value = document.createElement("output");
    value.textContent = "0.00";
    name.append(`${d.name} = `, value);
    const input = Object.assign(document.createElement("input"),
      { type: "range", min: -3, max: 3, step: 0.25, value: 0 });
    input.dataset.direction = d.name;
    input.addEventListener("input", () => { value.textContent = Number(input.value).toFixed(2); later(); });
    label.append(name, input);
    return label;
  }));
  if (subject) render();
}

function later() { // re-render once the slider rests: one request per pause, not per pixel moved
  clearTimeout(timer);
  timer = setTimeout(render, 150);
}

function edit() {
  const terms = [...document.querySelectorAll("#sliders input")]
    .filter((i) => Number(i.value) !== 0).map((i) => [i.dataset.direction, Number(i.value)]);
  return terms.length ? Object.fromEntries(terms) : null;
}

async function render() {
  if (!subject || $("edit-panel").hidden) return;
  const mine = ++rendering;
  const e = edit();
  const extra = e ? { edit: e, directions: $("dirs-file").value } : {};
  const model = $("model").value || null;
  $("subject").textContent = subject.latent ? subject.label : `seed ${subject.seed}`;
  try {
    // a seed: a one-image grid; a latent: a two-frame path from it to itself (the API's way to
    // render a given latent); both hold the image at (2, 2), inside make_grid's padding
    const r = subject.latent
      ? await call("POST", "/interpolate", { latents: [subject.latent, subject.latent], steps: 2,
          truncation: 1, model, ...extra })
      : await call("POST", "/generate", { seeds: [subject.seed], truncation: shown.truncation,
          model, ...extra });
    const bitmap = await createImageBitmap(await r.blob());
    if (mine !== rendering) return; // a newer slider position is on its way
    const res = currentModel().img_resolution;
    const canvas = $("edited");
    canvas.width = canvas.height = res;
    canvas.getContext("2d").drawImage(bitmap, 2, 2, res, res, 0, 0, res, res);
    canvas.dataset.edit = r.headers.get("x-gan-serve-edit") || "";
    canvas.dataset.subject = $("subject").textContent;
  } catch (err) {
    status(`Error: ${err.message}`, true);
  }
}

function choose(next) {
  subject = next;
  render();
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
      fig.addEventListener("click", () => { choose({ seed: item.seed }); pick(fig); });
      return fig;
    });
    $("grid").replaceChildren(...figures);
    shown = { ...req, seeds: data.seeds };
    if (!subject || !subject.latent) choose({ seed: data.seeds[0] });
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
  if (fig === chosen[0]) chosen.reverse(); // keep the click order: from the first, to the second
  setBusy(1);
  try {
    const keys = await keysOf(chosen);
    status(`Interpolating ${keys.names[0]} → ${keys.names[1]}…`);
    const body = { ...keys.body, steps: 24, loop: true, model: shown.model };
    const r = await call("POST", "/interpolate", { ...body, format: "gif" });
    const url = URL.createObjectURL(await r.blob());
    const img = $("interpolation");
    URL.revokeObjectURL(img.src);
    img.dataset.seeds = keys.tag;
    img.src = url;
    $("interp-seeds").textContent = `${keys.names[0]} ↔ ${keys.names[1]}`;
    path = { body, name: `interpolation-${keys.tag.replace(",", "-")}` };
    const a = $("download-gif");
    a.href = url;
    a.download = `${path.name}.gif`;
    $("interp-panel").hidden = false;
    status(`Interpolation ${keys.names[0]} ↔ ${keys.names[1]}: slerp, 24 frames per leg, looping.`);
  } catch (e) {
    status(`Error: ${e.message}`, true);
  } finally {
    setBusy(-1);
  }
}

async function keysOf(chosen) {
  // two seeds: a path through seeds (at the grid's ψ); with a projection: a path through latents,
  // a seed's latent as `generate --latents-out` saves it (layout npy), all at ψ 1 as projected
  if (chosen.every((f) => f.dataset.seed !== undefined)) {
    const seeds = chosen.map((f) => Number(f.dataset.seed));
    return { body: { seeds, truncation: shown.truncation }, tag: seeds.join(","),
             names: seeds.map((s) => `seed ${s}`) };
  }
  const latents = await Promise.all(chosen.map((f) => f.dataset.latent !== undefined
    ? JSON.parse(f.dataset.latent) : seedLatent(Number(f.dataset.seed))));
  return { body: { latents, truncation: 1 }, tag: chosen.map((f) => f.dataset.name || f.dataset.seed).join(","),
           names: chosen.map((f) => f.dataset.label || `seed ${f.dataset.seed}`) };
}

async function seedLatent(seed) {
  const r = await call("POST", "/generate", { seeds: [seed], layout: "npy", model: shown.model });
  const npy = await r.arrayBuffer(); // a version 1 .npy: magic, version, header length, header
  const start = 10 + new DataView(npy).getUint16(8, true);
  return Array.from(new Float32Array(npy.slice(start))); // '<f4', (1, z_dim): little-endian
}

async function downloadVideo() {
  if (!path) return;
  status("Encoding the video…");
  setBusy(1);
  try {
    const r = await call("POST", "/interpolate", { ...path.body, format: "mp4" });
    save(await r.blob(), `${path.name}.mp4`);
    status(`Video of ${$("interp-seeds").textContent}: H.264, ${r.headers.get("x-gan-serve-fps")} fps.`);
  } catch (e) {
    status(`Error: ${e.message}`, true);
  } finally {
    setBusy(-1);
  }
}

function save(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

const SMALL = 45 * 1024; // files up to this size fit the server's default 64 KiB body as base64

function base64(blob) { // the bytes as base64, without the data: prefix
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(new Error("could not read the file"));
    reader.readAsDataURL(blob);
  });
}

async function upload(file) {
  // a larger file is fitted here as the server would fit it (shorter side to the model's
  // resolution, centre crop), so that its body stays under the server's limit
  if (file.size <= SMALL) return { image: await base64(file), fitted: false };
  const res = currentModel().img_resolution;
  const bitmap = await createImageBitmap(file);
  const side = Math.min(bitmap.width, bitmap.height);
  const canvas = Object.assign(document.createElement("canvas"), { width: res, height: res });
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, res, res);
  const png = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  return { image: await base64(png), fitted: true };
}

async function project(file) {
  if (!file) return;
  status(`Projecting ${file.name}…`);
  setBusy(1);
  try {
    const { image, fitted } = await upload(file);
    const model = $("model").value || null;
    const r = await call("POST", "/project", { image, model, steps: Number($("project-steps").value) });
    const data = await r.json();
    URL.revokeObjectURL($("target").src);
    $("target").src = URL.createObjectURL(file);
    $("reconstruction").src = `data:image/png;base64,${data.image}`;
    $("psnr").textContent = `reconstruction · ${data.psnr.toFixed(1)} dB`;
    $("projection").hidden = false;
    const k = $("projected").children.length + 1;
    const fig = projectedFigure(k, file.name, data);
    $("projected").prepend(fig);
    choose(fig.subject);
    status(`${file.name} projected${fitted ? " (fitted to the model's size here: the file is over 45 KiB)" : ""}: ` +
           `PSNR ${data.psnr.toFixed(1)} dB, SSIM ${data.ssim.toFixed(3)}. ` +
           "Click it and another image to interpolate; the sliders edit it.");
  } catch (e) {
    status(`Error: ${e.message}`, true);
  } finally {
    setBusy(-1);
  }
}

function projectedFigure(k, fileName, data) {
  const fig = document.createElement("figure");
  const label = `projection ${k}`;
  fig.className = "projected";
  fig.dataset.latent = JSON.stringify(data.latent);
  fig.dataset.name = `p${k}`;
  fig.dataset.label = label;
  fig.title = `${label}: ${fileName}, ${data.psnr.toFixed(1)} dB`;
  fig.subject = { latent: data.latent, label: `${label} (${fileName})` };
  const img = new Image();
  img.alt = label;
  img.src = `data:image/png;base64,${data.image}`;
  const cap = document.createElement("figcaption");
  cap.textContent = label;
  fig.append(img, cap);
  fig.addEventListener("click", () => { choose(fig.subject); pick(fig); });
  return fig;
}

async function download(layout) {
  if (!shown) return;
  setBusy(1);
  try {
    const { seed, n, truncation, model } = shown;
    const r = await call("POST", "/generate", { seed, n, truncation, model, layout });
    save(await r.blob(), `seeds-${r.headers.get("x-seeds")}.${layout === "zip" ? "zip" : "png"}`);
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
$("dirs-file").addEventListener("change", buildSliders);
$("reset").addEventListener("click", () => {
  document.querySelectorAll("#sliders input").forEach((i) => { i.value = 0; i.dispatchEvent(new Event("input")); });
});
$("download-video").addEventListener("click", downloadVideo);
$("file").addEventListener("change", () => project($("file").files[0]));
$("drop").addEventListener("dragover", (ev) => { ev.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (ev) => {
  ev.preventDefault();
  $("drop").classList.remove("over");
  project(ev.dataTransfer.files[0]);
});
loadModels();
