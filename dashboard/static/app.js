/* Sharpen dashboard: progressive enhancement for the server-rendered pages (no inline scripts: CSP).
   - batch page: polls the JSON API for progress and re-fetches the results part while the batch runs
   - upload page: drag and drop of files and folders, upload progress for the transfer itself
   - comparison viewer: side by side or slider, synchronised wheel zoom (to 100 %) and panning, keyboard
   - live parts (a training run's page, a model comparison): poll a JSON URL, re-fetch the changing part
   - workers panel: polls the JSON API and redraws the queue lengths and the workers online */
"use strict";

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
  return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
}

function megabytes(n) { return (n / 1048576).toFixed(1) + " MB"; }
function size(n) { return n < 1048576 ? Math.max(1, Math.round(n / 1024)) + " KB" : megabytes(n); }

/* ---------- batch page: live progress ---------- */
function liveBatch(card) {
  const pollMs = Number(card.dataset.pollMs) || 1000;
  const bar = document.getElementById("batch-progress");
  let lastEnded = null, lastRefresh = Date.now(), final = card.dataset.final === "true";
  const set = (name, value) => document.querySelectorAll('[data-field="' + name + '"]').forEach((el) => {
    if (el.closest("#live")) return;  // the results part has its own badges
    el.textContent = value;
  });

  async function refreshResults() {
    lastRefresh = Date.now();
    const response = await fetch(card.dataset.liveUrl, { cache: "no-store" });
    if (response.ok) document.getElementById("live").innerHTML = await response.text();
  }

  async function tick() {
    try {
      const response = await fetch(card.dataset.progressUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (response.ok) {
        const b = await response.json();
        bar.value = b.percent;
        bar.textContent = b.percent + " %";
        set("percent", b.percent);
        set("ended", b.ended);
        set("done", b.counts.done);
        set("failed", b.counts.failed);
        set("rate", b.images_per_s ? b.images_per_s.toFixed(2) : "–");
        set("eta", duration(b.eta_s));
        set("elapsed", duration(b.elapsed_s));
        const badge = document.querySelector(".page-head .badge");
        if (badge) { badge.textContent = b.status; badge.className = "badge badge-" + b.status; }
        const changed = lastEnded !== null && b.ended !== lastEnded;
        if (b.final || (changed && Date.now() - lastRefresh > 2000)) await refreshResults();
        lastEnded = b.ended;
        final = b.final;
        card.dataset.final = String(final);
      }
    } catch (err) { /* the server restarts or the network drops: keep trying */ }
    if (!final) setTimeout(tick, pollMs);
  }
  if (!final) setTimeout(tick, Math.min(pollMs, 500));
}

/* ---------- upload page ---------- */
function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

async function filesFromEntry(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, name: prefix + file.name });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
      for (const child of batch) await filesFromEntry(child, prefix + entry.name + "/", out);
    }
  }
}

function uploadForm(form) {
  const dropped = [];
  const zone = document.getElementById("dropzone");
  const chosen = document.getElementById("chosen");
  const inputs = { files: document.getElementById("files"), folder: document.getElementById("folder"),
                   references: document.getElementById("references") };
  const errorBox = document.getElementById("upload-error");
  const progress = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");

  function showMode() {
    const mode = form.querySelector('input[name="mode"]:checked').value;
    form.querySelectorAll("[data-for-mode]").forEach((el) => { el.hidden = el.dataset.forMode !== mode; });
  }
  form.querySelectorAll('input[name="mode"]').forEach((el) => el.addEventListener("change", showMode));
  showMode();

  function selection() {
    const list = [];
    for (const f of inputs.files.files) list.push({ file: f, name: f.name });
    for (const f of inputs.folder.files) list.push({ file: f, name: f.webkitRelativePath || f.name });
    return list.concat(dropped);
  }
  function summarise() {
    const list = selection();
    const bytes = list.reduce((n, item) => n + item.file.size, 0);
    chosen.textContent = list.length ? list.length + " file" + (list.length === 1 ? "" : "s") + " chosen, " + size(bytes) : "No files chosen.";
  }
  inputs.files.addEventListener("change", summarise);
  inputs.folder.addEventListener("change", summarise);

  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const entries = [...e.dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
    if (entries.length) { for (const entry of entries) await filesFromEntry(entry, "", dropped); }
    else { for (const f of e.dataTransfer.files) dropped.push({ file: f, name: f.name }); }
    summarise();
  });

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    data.delete("files");
    data.delete("references");
    for (const item of selection()) data.append("files", item.file, item.name);
    for (const f of inputs.references.files) data.append("references", f, f.name);
    const button = document.getElementById("submit");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    errorBox.hidden = true;
    progress.hidden = false;
    progress.value = 0;
    button.disabled = true;
    xhr.upload.addEventListener("progress", (ev) => {
      if (!ev.lengthComputable) return;
      progress.value = (100 * ev.loaded) / ev.total;
      status.textContent = "Uploading " + megabytes(ev.loaded) + " of " + megabytes(ev.total);
    });
    xhr.upload.addEventListener("load", () => { status.textContent = "Uploaded; creating the batch…"; });
    const fail = (message) => {
      errorBox.textContent = message;
      errorBox.hidden = false;
      progress.hidden = true;
      status.textContent = "";
      button.disabled = false;
    };
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { /* an HTML error page */ }
      if (xhr.status === 201 && body.url) window.location.assign(body.url);
      else if (xhr.responseURL && xhr.responseURL.includes("/login")) window.location.assign(xhr.responseURL);
      else fail(body.error || "The upload failed (HTTP " + xhr.status + ").");
    });
    xhr.addEventListener("error", () => fail("The upload failed: the connection was lost (is the upload larger than the limit?)."));
    xhr.send(data);
  });
}

/* ---------- comparison viewer ---------- */
function compareViewer(viewer) {
  const dpr = window.devicePixelRatio || 1;
  const side = document.getElementById("side-view");
  const sliderView = document.getElementById("slider-view");
  const under = sliderView.querySelector("img.under");
  const over = sliderView.querySelector("img.over");
  const overClip = sliderView.querySelector(".over-clip");
  const line = sliderView.querySelector(".slider-line");
  const position = document.getElementById("slider-pos");
  const pair = document.getElementById("slider-pair");
  const zoomLabel = document.getElementById("zoom-level");
  const names = { input: "Blurry", output: "Sharpened", reference: "Reference" };
  const view = { s: 1, cx: 0, cy: 0, fit: true };
  let mode = sessionStorage.getItem("sharpen-view") === "slider" ? "slider" : "side";

  const ports = () => [...viewer.querySelectorAll(mode === "slider" ? "#slider-view .viewport" : "#side-view .viewport")];
  const natural = () => {
    const img = [...viewer.querySelectorAll(".viewport img")].find((i) => i.naturalWidth);
    return img ? { w: img.naturalWidth, h: img.naturalHeight } : null;
  };
  function fit() {
    const n = natural(), port = ports()[0];
    if (!n || !port) return;
    view.s = Math.min(port.clientWidth / n.w, port.clientHeight / n.h);
    view.cx = n.w / 2; view.cy = n.h / 2; view.fit = true;
    apply();
  }
  function apply() {
    for (const port of ports()) {
      const x = port.clientWidth / 2 - view.cx * view.s, y = port.clientHeight / 2 - view.cy * view.s;
      port.querySelectorAll("img").forEach((img) => { img.style.transform = "translate(" + x + "px," + y + "px) scale(" + view.s + ")"; });
      port.classList.toggle("pixelated", view.s * dpr >= 2);
    }
    zoomLabel.textContent = view.fit ? "fit (" + Math.round(view.s * dpr * 100) + " %)" : Math.round(view.s * dpr * 100) + " %";
  }
  function zoomTo(s, px, py, port) {
    s = Math.min(32, Math.max(0.02, s));
    if (port) {  // keep the image point under the pointer where it is
      const dx = px - port.clientWidth / 2, dy = py - port.clientHeight / 2;
      const ix = view.cx + dx / view.s, iy = view.cy + dy / view.s;
      view.cx = ix - dx / s; view.cy = iy - dy / s;
    }
    view.s = s; view.fit = false;
    apply();
  }
  function setMode(next) {
    mode = next;
    sessionStorage.setItem("sharpen-view", mode);
    viewer.classList.toggle("mode-slider", mode === "slider");
    side.hidden = mode === "slider";
    sliderView.hidden = mode !== "slider";
    viewer.querySelectorAll("[data-mode]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode)));
    if (view.fit) fit(); else apply();
  }
  function setSlider(pct) {
    overClip.style.clipPath = "inset(0 " + (100 - pct) + "% 0 0)";
    line.style.left = pct + "%";
  }
  function setPair() {
    const [left, right] = pair.value.split("|");
    over.src = under.dataset["src" + left[0].toUpperCase() + left.slice(1)];
    under.src = under.dataset["src" + right[0].toUpperCase() + right.slice(1)];
    document.getElementById("slider-left").textContent = names[left];
    document.getElementById("slider-right").textContent = names[right];
  }

  viewer.querySelectorAll(".viewport").forEach((port) => {
    port.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = port.getBoundingClientRect();
      zoomTo(view.s * Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top, port);
    }, { passive: false });
    let drag = null;
    port.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY }; port.setPointerCapture(e.pointerId); port.classList.add("dragging"); });
    port.addEventListener("pointermove", (e) => {
      if (!drag) return;
      view.cx -= (e.clientX - drag.x) / view.s; view.cy -= (e.clientY - drag.y) / view.s;
      drag = { x: e.clientX, y: e.clientY };
      apply();
    });
    const end = () => { drag = null; port.classList.remove("dragging"); };
    port.addEventListener("pointerup", end);
    port.addEventListener("pointercancel", end);
  });
  viewer.querySelectorAll("[data-mode]").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
  viewer.querySelectorAll("[data-zoom]").forEach((b) => b.addEventListener("click", () => {
    const z = b.dataset.zoom;
    if (z === "fit") fit();
    else if (z === "1") zoomTo(1 / dpr);
    else zoomTo(view.s * (z === "in" ? 1.5 : 1 / 1.5));
  }));
  position.addEventListener("input", () => setSlider(Number(position.value)));
  pair.addEventListener("change", setPair);
  viewer.querySelectorAll("img").forEach((img) => img.addEventListener("load", () => { if (view.fit) fit(); else apply(); }));
  window.addEventListener("resize", () => { if (view.fit) fit(); else apply(); });
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const go = (url) => { if (url) window.location.assign(url); };
    if (e.key === "ArrowLeft") go(viewer.dataset.prevUrl);
    else if (e.key === "ArrowRight") go(viewer.dataset.nextUrl);
    else if (e.key === "1") zoomTo(1 / dpr);
    else if (e.key === "0") fit();
    else if (e.key === "+" || e.key === "=") zoomTo(view.s * 1.5);
    else if (e.key === "-") zoomTo(view.s / 1.5);
    else if (e.key === "s") setMode(mode === "slider" ? "side" : "slider");
  });
  setSlider(Number(position.value));
  setMode(mode);
}

/* ---------- live parts: a training run, a model comparison ---------- */
// Put new HTML into target, keeping each top-level element that did not change: a button under the pointer
// (a run's Cancel) is not swapped for a copy between the press and the click.
function replaceParts(target, html) {
  const fresh = document.createElement("div");
  fresh.innerHTML = html;
  const old = Array.from(target.children), next = Array.from(fresh.children);
  if (old.length !== next.length) { target.replaceChildren(...fresh.childNodes); return; }
  next.forEach((node, i) => { if (!old[i].isEqualNode(node)) old[i].replaceWith(node); });
}

function livePart(card) {
  // data-progress-url: JSON polled every data-poll-ms; [data-field] inside the card show its keys
  // (data-places: decimals); data-revision-keys: when those keys change, data-live-url (HTML) replaces
  // the element data-target; data-bar (and data-bar-max): the keys the progress bar shows. Stops when final.
  const pollMs = Number(card.dataset.pollMs) || 1000;
  const target = document.getElementById(card.dataset.target);
  const keys = (card.dataset.revisionKeys || "revision").split(",");
  const bar = card.querySelector("progress");
  let revision = card.dataset.revision || null, final = card.dataset.final === "true";

  function show(el, value) {
    if (value === null || value === undefined) { el.textContent = "–"; return; }
    const places = el.dataset.places;
    el.textContent = places !== undefined && typeof value === "number" ? value.toFixed(Number(places)) : String(value);
  }
  async function tick() {
    try {
      const response = await fetch(card.dataset.progressUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (response.ok) {
        const data = await response.json();
        card.querySelectorAll("[data-field]").forEach((el) => { if (el.dataset.field in data) show(el, data[el.dataset.field]); });
        if (bar && card.dataset.bar) {
          if (card.dataset.barMax) bar.max = data[card.dataset.barMax] || 1;
          bar.value = data[card.dataset.bar] || 0;
        }
        const badge = document.querySelector(".page-head .badge");
        if (badge && data.status) { badge.textContent = data.status; badge.className = "badge badge-" + data.status; }
        const next = keys.map((k) => String(data[k])).join("|");
        if (next !== revision) {
          const live = await fetch(card.dataset.liveUrl, { cache: "no-store" });
          if (live.ok) { replaceParts(target, await live.text()); revision = next; }
        }
        final = Boolean(data.final) && revision === next;
        card.dataset.final = String(final);
      }
    } catch (err) { /* the server restarts or the network drops: keep trying */ }
    if (!final) setTimeout(tick, pollMs);
  }
  if (!final) setTimeout(tick, Math.min(pollMs, 500));
}

/* ---------- workers panel ---------- */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

function workersPanel(panel) {
  const pollMs = Number(panel.dataset.pollMs) || 5000;
  const batchUrl = (id) => panel.dataset.batchUrl.replace(/0$/, String(id));
  const updated = document.getElementById("workers-updated");

  function doing(tasks) {
    if (!tasks.length) return [el("span", { class: "muted" }, "idle")];
    const out = [];
    for (const t of tasks) {
      if (t.job_ids && t.job_ids.length) {
        const n = t.job_ids.length;
        out.push("sharpening " + n + " image" + (n === 1 ? "" : "s"));
        if (t.batch_id) out.push(" of ", el("a", { href: batchUrl(t.batch_id) }, "batch " + t.batch_id));
      } else out.push(t.run_id ? "training run " + t.run_id : String(t.name));
      out.push(el("br"));
    }
    return out;
  }

  function draw(data) {
    for (const cell of panel.querySelectorAll("[data-queue]")) {
      const n = data.queues[cell.dataset.queue];
      cell.textContent = n === null || n === undefined ? "–" : n;
    }
    document.getElementById("broker-down").hidden = !Object.values(data.queues).some((n) => n === null);
    const rows = data.workers.map((w) => el("tr", {},
      el("td", {}, w.name.split("@")[0] + " ", el("span", { class: "muted small" }, "pid " + (w.pid || "–")),
        ...(w.busy ? [" ", el("span", { class: "badge badge-running" }, "busy")] : [])),
      el("td", {}, w.host), el("td", {}, (w.queues || []).join(", ")), el("td", {}, w.device || "–"),
      el("td", { class: "hide-narrow" }, (w.pool || "–") + " × " + (w.concurrency || 1)),
      el("td", {}, ...doing(w.tasks))));
    document.querySelector("#workers tbody").replaceChildren(...rows);
    document.getElementById("workers-count").textContent = data.workers.length;
    document.querySelector("#workers").closest(".table-wrap").hidden = !data.workers.length;
    document.getElementById("no-workers").hidden = data.workers.length > 0;
    updated.textContent = "updated " + new Date().toLocaleTimeString();
  }

  async function tick() {
    if (!document.hidden) {  // each refresh asks every worker: not for a tab nobody looks at
      try {
        const response = await fetch(panel.dataset.workersUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
        if (response.ok) draw(await response.json());
      } catch (err) { /* the dashboard restarts: keep trying */ }
    }
    setTimeout(tick, pollMs);
  }
  setTimeout(tick, pollMs);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live-part]").forEach(livePart);
  const card = document.getElementById("progress");
  if (card) liveBatch(card);
  const form = document.getElementById("upload");
  if (form) uploadForm(form);
  const viewer = document.getElementById("viewer");
  if (viewer) compareViewer(viewer);
  const workers = document.getElementById("workers-panel");
  if (workers) workersPanel(workers);
});
