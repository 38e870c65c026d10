// tfvtg serve: the page. Plain JS, no build step; talks to the JSON API only.
"use strict";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const SUB_COLOURS = ["#e8833a", "#2e9d5b", "#9b51e0", "#d64550", "#1f9fb4"];
const THUMBS_PER_HIT = 3;

const state = {
  info: null,
  mode: "library",          // "library" or "one"
  upload: null,             // {token, name, media, ...} once an upload is encoded
  query: "",
  hits: [],
  selected: -1,
  moment: null,             // {start, end, active}: where the player stops or loops
  curve: null,
  offset: 0,                // seconds of the source at the player's 0 (a re-encoded preview starts later)
  playing: null,            // the media URL the player shows
  searchSeq: 0,
  curveSeq: 0,
  busyToken: 0,
};

// -- small helpers ------------------------------------------------------------
function fmt(seconds) {
  const s = Math.max(0, Math.floor(seconds + 1e-6));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error(`the server does not answer (${err.message}); is tfvtg serve still running?`);
  }
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    if (type.includes("json")) {
      try { message = (await response.json()).error || message; } catch (_) { /* keep the status line */ }
    }
    throw new Error(message);
  }
  return type.includes("json") ? response.json() : response;
}

function busy(text, fraction) {
  const token = ++state.busyToken;
  $("status").hidden = false;
  $("status-text").textContent = text;
  const bar = $("progress");
  if (fraction === undefined || fraction === null) bar.removeAttribute("value");
  else bar.value = Math.max(0, Math.min(1, fraction));
  return token;
}

function idle(token) {
  if (token === undefined || token === state.busyToken) $("status").hidden = true;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- start ----------------------------------------------------------------------
async function start() {
  try {
    state.info = await api("/api/info");
  } catch (err) {
    showError(`Cannot reach the server: ${err.message}`);
    return;
  }
  const lib = state.info.library;
  if (lib) {
    const hours = lib.hours >= 1 ? `${lib.hours.toFixed(1)} h` : `${Math.round(lib.hours * 60)} min`;
    $("library-info").textContent = `${lib.name} · ${lib.videos} videos · ${hours}` + (lib.encoder ? ` · ${shortName(lib.encoder)}` : "");
    setMode("library");
  } else {
    $("mode-library").disabled = true;
    $("mode-library").title = "started without a library: tfvtg serve LIBRARY_DIR";
    $("library-info").textContent = "no library: one video mode";
    setMode("one");
  }
  if (state.info.warm_error) showError(`The server could not get ready: ${state.info.warm_error}`);
  $("query").focus();
}

function shortName(path) {
  const parts = String(path).split(/[\\/]/).filter(Boolean);
  return parts.length ? parts[parts.length - 1] : path;
}

function setMode(mode) {
  state.mode = mode;
  $("mode-library").setAttribute("aria-selected", String(mode === "library"));
  $("mode-one").setAttribute("aria-selected", String(mode === "one"));
  $("one-video").hidden = mode !== "one";
  clearError();
  clearHits(mode === "one" && !state.upload ? "Upload a video, then type a sentence." : "Type a sentence and press Enter.");
  if (mode === "one" && state.upload) showUploadedVideo();
}

function clearHits(message) {
  state.hits = [];
  state.selected = -1;
  $("hits").textContent = "";
  $("summary").textContent = message;
  $("hit-title").textContent = "No moment selected.";
  $("replay").disabled = true;
  $("cut").disabled = true;
  state.curve = null;
  drawCurve();
  $("legend").textContent = "";
}

// -- search ---------------------------------------------------------------------
async function search() {
  const query = $("query").value.trim();
  clearError();
  if (!query) {
    showError("Type a sentence to search for.");
    return;
  }
  let url;
  const topK = $("top-k").value;
  if (state.mode === "library") {
    url = `/api/search?q=${enc(query)}&top_k=${topK}`;
  } else {
    if (!state.upload) {
      showError("Upload a video first (pick a file above), then ask about it.");
      return;
    }
    url = `${state.upload.media}/search?q=${enc(query)}&top_k=${topK}`;
  }
  const seq = ++state.searchSeq;
  const token = busy(`Searching for “${query}”…`);
  $("search-button").disabled = true;
  try {
    const result = await api(url);
    if (seq !== state.searchSeq) return;
    state.query = result.query;
    renderHits(result);
  } catch (err) {
    if (seq === state.searchSeq) showError(`Search failed: ${err.message}`);
  } finally {
    if (seq === state.searchSeq) {
      idle(token);
      $("search-button").disabled = false;
    }
  }
}

function renderHits(result) {
  state.hits = result.hits;
  state.selected = -1;
  const list = $("hits");
  list.textContent = "";
  let summary = `${result.hits.length} moment${result.hits.length === 1 ? "" : "s"} for “${result.query}”`;
  if (result.candidates) summary += ` · ${result.candidates} video${result.candidates === 1 ? "" : "s"} grounded`;
  if (typeof result.search_ms === "number") summary += ` · ${Math.round(result.search_ms)} ms`;
  if (result.decomposition && result.decomposition.sub_events.length) {
    summary += ` · ${result.decomposition.sub_events.length} sub-events (${result.decomposition.relationship})`;
  }
  if (result.note) summary += `. ${result.note}`;
  $("summary").textContent = summary;
  result.hits.forEach((hit, i) => {
    const item = el("li", "hit");
    item.dataset.index = String(i);
    item.dataset.video = hit.video;
    item.dataset.start = String(hit.start);
    item.dataset.end = String(hit.end);
    const head = el("div", "hit-head");
    head.append(el("span", "hit-rank", `${i + 1}.`), el("span", "hit-name", hit.name),
      el("span", "hit-time", `${fmt(hit.start)}–${fmt(hit.end)}`), el("span", "hit-score", hit.score.toFixed(3)));
    head.title = `${hit.name}: ${hit.start.toFixed(1)} s – ${hit.end.toFixed(1)} s, score ${hit.score.toFixed(4)}`;
    item.append(head);
    if (hit.has_source) {
      const thumbs = el("div", "thumbs");
      for (let j = 0; j < THUMBS_PER_HIT; j++) {
        const t = hit.start + ((j + 0.5) / THUMBS_PER_HIT) * (hit.end - hit.start);
        const img = el("img");
        img.alt = `frame at ${fmt(t)}`;
        img.dataset.src = `${hit.media}/thumb?t=${t.toFixed(1)}`;
        thumbs.append(img);
      }
      item.append(thumbs);
    }
    item.addEventListener("click", () => select(i, true));
    list.append(item);
  });
  if (result.hits.length) select(0, false);
  // thumbnails after the list is on screen: the first hit never waits for them
  requestAnimationFrame(() => setTimeout(loadThumbnails, 0));
}

function loadThumbnails() {
  const pending = Array.from(document.querySelectorAll("#hits img[data-src]"));
  const searchSeq = state.searchSeq;
  let next = 0;
  const worker = () => {
    if (next >= pending.length || searchSeq !== state.searchSeq) return;
    const img = pending[next++];
    img.onload = worker;
    img.onerror = () => {
      const missing = el("span", "thumb-missing");
      missing.title = "no frame could be read here";
      img.replaceWith(missing);
      worker();
    };
    img.src = img.dataset.src;
    img.removeAttribute("data-src");
  };
  for (let k = 0; k < 4; k++) worker();
}

// -- selecting and playing -------------------------------------------------------
function select(index, play) {
  if (index < 0 || index >= state.hits.length) return;
  state.selected = index;
  document.querySelectorAll("#hits .hit").forEach((item, i) => item.classList.toggle("selected", i === index));
  const item = document.querySelector(`#hits .hit[data-index="${index}"]`);
  if (item) item.scrollIntoView({ block: "nearest" });
  const hit = state.hits[index];
  const title = $("hit-title");
  title.textContent = "";
  title.append(el("b", "", hit.name), ` · ${fmt(hit.start)}–${fmt(hit.end)} · score ${hit.score.toFixed(3)}`);
  $("replay").disabled = !hit.has_source;
  $("cut").disabled = !hit.has_source;
  playMoment(hit, play);
  loadCurve(hit);
}

function playMoment(hit, play) {
  const player = $("player");
  $("player-error").hidden = true;
  state.moment = { start: hit.start, end: hit.end, active: true };
  if (!hit.has_source) {
    player.removeAttribute("src");
    player.load();
    state.playing = null;
    showPlayerError(`The library has no video file for ${hit.name} (it was added as features): its moments can be searched, not watched.`);
    return;
  }
  const go = () => {
    player.currentTime = Math.max(0, hit.start - state.offset);
    if (play) {
      player.play().catch(() => { /* the browser wants a click on play first: the player is at the moment's start */ });
    }
  };
  const media = `${hit.media}/stream`;
  if (state.playing !== media) {
    state.playing = media;
    state.offset = 0;
    player.src = media;
    player.addEventListener("loadedmetadata", go, { once: true });
  } else if (player.readyState >= 1) {
    go();
  } else {
    player.addEventListener("loadedmetadata", go, { once: true });
  }
}

function showPlayerError(message) {
  const box = $("player-error");
  box.textContent = message;
  box.hidden = false;
}

function onPlayerError() {
  const player = $("player");
  if (!player.error || !state.playing || state.playing.startsWith("blob:")) {
    if (state.playing && state.playing.startsWith("blob:")) showPlayerError("The browser cannot play the re-encoded preview either.");
    return;
  }
  const hit = state.hits[state.selected];
  const why = player.error.message || `media error ${player.error.code}`;
  if (!hit) {
    showPlayerError(`The browser cannot play this video (${why}).`);
    return;
  }
  // a codec the browser lacks (MPEG-4 Part 2, ...): play the moment re-encoded instead
  showPlayerError(`The browser cannot play this video file (${why}); playing a re-encoded preview of the moment instead.`);
  previewMoment(hit);
}

async function previewMoment(hit) {
  const token = busy("Re-encoding the moment for the browser…");
  try {
    const response = await api(`${hit.media}/clip?start=${hit.start}&end=${hit.end}&pad=2&mode=reencode`);
    const startOfClip = parseFloat(response.headers.get("x-clip-start") || "0");
    const blob = await response.blob();
    const player = $("player");
    state.offset = startOfClip;
    state.playing = URL.createObjectURL(blob);
    player.src = state.playing;
    player.addEventListener("loadedmetadata", () => {
      player.currentTime = Math.max(0, hit.start - state.offset);
      player.play().catch(() => {});
    }, { once: true });
  } catch (err) {
    showPlayerError(`The browser cannot play this video, and no preview could be made: ${err.message}`);
  } finally {
    idle(token);
  }
}

function watchPlayer() {
  const player = $("player");
  const m = state.moment;
  if (m && m.active && !player.paused) {
    const now = player.currentTime + state.offset;
    if (now >= m.end) {
      if ($("loop").checked) {
        player.currentTime = Math.max(0, m.start - state.offset);
      } else {
        player.pause();
        player.currentTime = Math.max(0, m.end - state.offset);
      }
    }
  }
  drawCurve();
  if (!player.paused) requestAnimationFrame(watchPlayer);
}

function onPlay() {
  const player = $("player");
  const m = state.moment;
  if (m) {
    const now = player.currentTime + state.offset;
    // played from outside the moment (or from its end): the user watches freely
    if (now < m.start - 0.3 || now >= m.end - 0.05) m.active = false;
  }
  requestAnimationFrame(watchPlayer);
}

function replay() {
  const hit = state.hits[state.selected];
  if (hit) playMoment(hit, true);
}

// -- the similarity curve --------------------------------------------------------
async function loadCurve(hit) {
  const seq = ++state.curveSeq;
  state.curve = null;
  $("legend").textContent = "computing the similarity curve…";
  drawCurve();
  try {
    const curve = await api(`${hit.media}/curve?q=${enc(state.query)}&start=${hit.start}&end=${hit.end}`);
    if (seq !== state.curveSeq) return;
    state.curve = curve;
    drawLegend(curve);
    drawCurve();
  } catch (err) {
    if (seq === state.curveSeq) $("legend").textContent = `No curve: ${err.message}`;
  }
}

function drawLegend(curve) {
  const legend = $("legend");
  legend.textContent = "";
  const entry = (colour, text, line) => {
    const span = el("span");
    const sw = el("span", "swatch");
    sw.style.background = colour;
    if (line) sw.style.height = "3px";
    span.append(sw, text);
    legend.append(span);
  };
  entry("#2f6fed", "query–frame similarity", true);
  entry("rgba(47,111,237,0.25)", "this moment");
  if (curve.candidates.length) entry("#98a2b3", `other candidates (${curve.candidates.length})`);
  curve.sub_events.forEach((ev, i) => entry(SUB_COLOURS[i % SUB_COLOURS.length], `sub-event ${i + 1}: ${ev.description}`));
  if (curve.relationship && curve.sub_events.length) legend.append(el("span", "", `(${curve.relationship})`));
}

function curveLayout(canvas, curve) {
  const lanes = 1 + (curve ? curve.sub_events.length : 0);
  const laneHeight = 14;
  const css = { w: canvas.clientWidth || 600, h: 150 + lanes * (laneHeight + 4) + 20 };
  return { left: 46, right: 12, top: 10, plotH: 130, laneHeight, lanes, css };
}

function drawCurve() {
  const canvas = $("curve");
  const curve = state.curve;
  const L = curveLayout(canvas, curve);
  const ratio = window.devicePixelRatio || 1;
  if (canvas.height !== Math.round(L.css.h * ratio) || canvas.width !== Math.round(L.css.w * ratio)) {
    canvas.width = Math.round(L.css.w * ratio);
    canvas.height = Math.round(L.css.h * ratio);
    canvas.style.height = `${L.css.h}px`;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, L.css.w, L.css.h);
  if (!curve) return;
  const w = L.css.w - L.left - L.right;
  const duration = curve.duration || 1;
  const x = (t) => L.left + (t / duration) * w;
  let lo = Math.min(curve.min, ...(curve.sub_events.flatMap((e) => (e.values || []).filter((v) => v !== null))));
  let hi = Math.max(curve.max, ...(curve.sub_events.flatMap((e) => (e.values || []).filter((v) => v !== null))));
  if (!(hi > lo)) { hi = lo + 1e-3; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const y = (v) => L.top + (1 - (v - lo) / (hi - lo)) * L.plotH;
  ctx.font = "11px system-ui, sans-serif";

  // the moment
  if (curve.moment) {
    ctx.fillStyle = "rgba(47,111,237,0.16)";
    ctx.fillRect(x(curve.moment.start), L.top, Math.max(1, x(curve.moment.end) - x(curve.moment.start)), L.plotH);
  }
  // axes and ticks
  ctx.strokeStyle = "#d9dde5";
  ctx.fillStyle = "#667085";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(L.left, L.top); ctx.lineTo(L.left, L.top + L.plotH); ctx.lineTo(L.left + w, L.top + L.plotH);
  ctx.stroke();
  ctx.textAlign = "right";
  ctx.fillText((hi - pad).toFixed(2), L.left - 4, y(hi - pad) + 4);
  ctx.fillText((lo + pad).toFixed(2), L.left - 4, y(lo + pad) + 4);
  const step = niceStep(duration);
  ctx.textAlign = "center";
  const axisY = L.top + L.plotH + L.lanes * (L.laneHeight + 4) + 16;
  for (let t = 0; t <= duration + 1e-9; t += step) {
    ctx.fillText(fmt(t), x(t), axisY);
  }
  // sub-event curves, then the query's
  curve.sub_events.forEach((ev, i) => {
    if (ev.values) polyline(ctx, curve.times, ev.values, x, y, SUB_COLOURS[i % SUB_COLOURS.length], 1, [4, 3]);
  });
  polyline(ctx, curve.times, curve.values, x, y, "#2f6fed", 1.8, []);
  // lanes under the plot: candidates, then each sub-event
  let laneY = L.top + L.plotH + 4;
  ctx.textAlign = "right";
  ctx.fillStyle = "#667085";
  ctx.fillText("cand.", L.left - 4, laneY + 11);
  curve.candidates.slice().reverse().forEach((c) => {
    ctx.fillStyle = `rgba(102,112,133,${Math.max(0.18, 0.7 - c.rank * 0.08)})`;
    ctx.fillRect(x(c.start), laneY, Math.max(2, x(c.end) - x(c.start)), L.laneHeight);
  });
  if (curve.moment) {
    ctx.strokeStyle = "#2f6fed";
    ctx.lineWidth = 2;
    ctx.strokeRect(x(curve.moment.start), laneY, Math.max(2, x(curve.moment.end) - x(curve.moment.start)), L.laneHeight);
  }
  curve.sub_events.forEach((ev, i) => {
    laneY += L.laneHeight + 4;
    const colour = SUB_COLOURS[i % SUB_COLOURS.length];
    ctx.fillStyle = colour;
    ctx.textAlign = "right";
    ctx.fillText(`#${i + 1}`, L.left - 4, laneY + 11);
    ev.moments.forEach((m, k) => {
      ctx.globalAlpha = Math.max(0.25, 0.85 - k * 0.2);
      ctx.fillRect(x(m.start), laneY, Math.max(2, x(m.end) - x(m.start)), L.laneHeight);
    });
    ctx.globalAlpha = 1;
  });
  // where the player is
  const player = $("player");
  if (state.playing && player.readyState >= 1) {
    const now = player.currentTime + state.offset;
    ctx.strokeStyle = "#d64550";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(x(now), L.top); ctx.lineTo(x(now), laneY + L.laneHeight);
    ctx.stroke();
  }
}

function polyline(ctx, times, values, x, y, colour, width, dash) {
  ctx.strokeStyle = colour;
  ctx.lineWidth = width;
  ctx.setLineDash(dash);
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < values.length; i++) {
    if (values[i] === null) { pen = false; continue; }
    if (pen) ctx.lineTo(x(times[i]), y(values[i]));
    else { ctx.moveTo(x(times[i]), y(values[i])); pen = true; }
  }
  ctx.stroke();
  ctx.setLineDash([]);
}

function niceStep(duration) {
  const target = duration / 8;
  for (const s of [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]) if (s >= target) return s;
  return 7200;
}

function seekFromCurve(event) {
  const curve = state.curve;
  if (!curve || !state.playing) return;
  const canvas = $("curve");
  const L = curveLayout(canvas, curve);
  const rect = canvas.getBoundingClientRect();
  const w = L.css.w - L.left - L.right;
  const t = ((event.clientX - rect.left - L.left) / w) * curve.duration;
  if (t < 0 || t > curve.duration) return;
  if (state.moment) state.moment.active = false;
  $("player").currentTime = Math.max(0, t - state.offset);
  drawCurve();
}

// -- cut ------------------------------------------------------------------------------
async function cut() {
  const hit = state.hits[state.selected];
  if (!hit) return;
  clearError();
  const token = busy(`Cutting ${hit.name} ${fmt(hit.start)}–${fmt(hit.end)}…`);
  try {
    const response = await api(`${hit.media}/clip?start=${hit.start}&end=${hit.end}&pad=1`);
    const disposition = response.headers.get("content-disposition") || "";
    const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
    const blob = await response.blob();
    const link = el("a");
    link.href = URL.createObjectURL(blob);
    link.download = match ? decodeURIComponent(match[1]) : "moment.mp4";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  } catch (err) {
    showError(`Cut failed: ${err.message}`);
  } finally {
    idle(token);
  }
}

// -- one video: upload, encode --------------------------------------------------------------
async function uploadFile(file) {
  if (!file) return;
  clearError();
  const limit = state.info ? state.info.max_upload_bytes : Infinity;
  if (file.size > limit) {
    showError(`${file.name} is ${(file.size / 2 ** 20).toFixed(0)} MiB; this server takes uploads up to ${(limit / 2 ** 20).toFixed(0)} MiB.`);
    return;
  }
  let token = busy(`Uploading ${file.name}…`, 0);
  try {
    const upload = await new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/api/uploads?name=${enc(file.name)}`);
      xhr.setRequestHeader("content-type", "application/octet-stream");
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) {
          token = busy(`Uploading ${file.name}… ${Math.round((100 * e.loaded) / e.total)}%`, e.loaded / e.total);
        }
      };
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body);
        else reject(new Error((body && body.error) || `${xhr.status} ${xhr.statusText}`));
      };
      xhr.onerror = () => reject(new Error("the upload did not reach the server"));
      xhr.send(file);
    });
    $("upload-name").textContent = `${upload.name}: encoding…`;
    for (;;) {
      const job = await api(`/api/jobs/${upload.job}`);
      if (job.state === "failed") throw new Error(job.message);
      const label = job.total ? `${job.done}/${job.total} frames` : job.message;
      token = busy(`Encoding ${upload.name}: ${label}`, job.fraction);
      if (job.state === "done") break;
      await sleep(250);
    }
    state.upload = await api(`/api/uploads/${upload.token}`);
    $("upload-name").textContent = `${state.upload.name} · ${fmt(state.upload.duration)} · ready: ask about it`;
    showUploadedVideo();
    if ($("query").value.trim()) search();
    else $("query").focus();
  } catch (err) {
    showError(`Upload failed: ${err.message}`);
    $("upload-name").textContent = "";
  } finally {
    idle(token);
    $("file").value = "";
  }
}

function showUploadedVideo() {
  const media = `${state.upload.media}/stream`;
  if (state.playing !== media) {
    state.playing = media;
    state.offset = 0;
    $("player").src = media;
  }
}

// -- wiring ---------------------------------------------------------------------------------
function wire() {
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("mode-library").addEventListener("click", () => setMode("library"));
  $("mode-one").addEventListener("click", () => setMode("one"));
  $("file").addEventListener("change", (e) => uploadFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    uploadFile(e.dataTransfer.files[0]);
  });
  const player = $("player");
  player.addEventListener("play", onPlay);
  player.addEventListener("seeked", drawCurve);
  player.addEventListener("timeupdate", () => { if (player.paused) drawCurve(); });
  player.addEventListener("error", onPlayerError);
  $("replay").addEventListener("click", replay);
  $("cut").addEventListener("click", cut);
  $("curve").addEventListener("click", seekFromCurve);
  window.addEventListener("resize", drawCurve);
  document.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    if (!state.hits.length || e.target.tagName === "SELECT" || e.altKey || e.ctrlKey || e.metaKey) return;
    e.preventDefault();
    const next = state.selected + (e.key === "ArrowDown" ? 1 : -1);
    select(Math.max(0, Math.min(state.hits.length - 1, next)), true);
  });
}

wire();
start();
