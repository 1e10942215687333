// inkq page: a drawing pad that calls POST /predict, and a bulk panel that
// submits image files as jobs, polls them and shows their results.
//
// Plain modern JavaScript, no build step and no dependencies, so the page works
// offline from the API server itself. Every server answer goes through
// `api()`, which turns HTTP and network failures into an ApiError with a
// human-readable message: the user never sees raw JSON or a silent failure.
"use strict";

(() => {
  // ------------------------------------------------------------------ constants

  // The formats workers read, by media type and by file name (a folder's files may lack a type).
  const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"];
  const IMAGE_NAME = /\.(png|jpe?g|webp|gif|bmp)$/i;
  const DATA_URL_PREFIX_MAX = "data:image/jpeg;base64,".length;
  const STROKE_WIDTH_FRACTION = 0.05;  // of the canvas width: looks like a felt pen
  const INK = "#14171c";               // dark ink; the canvas itself stays transparent
  const AUTO_PREDICT_DELAY_MS = 650;   // after the last stroke ends
  const POLL_INTERVAL_MS = 500;
  const MAX_SUBMIT_RETRIES = 4;        // on 429/503 and network errors, honouring Retry-After
  const BODY_OVERHEAD_BYTES = 64;      // {"images": []} plus slack
  const PER_IMAGE_OVERHEAD_BYTES = 4;  // quotes and a comma
  const READY_CHECK_MS = 30000;

  const ITEM_MESSAGES = {
    invalid_base64: "Not valid base64 data",
    invalid_image: "Not a readable image",
    unsupported_format: "Not an image format inkq reads (PNG, JPEG, WebP, GIF, BMP)",
    image_too_large: "Image too large",
    blank_image: "No drawing found (blank image)",
    not_processed: "Not processed (the job ended first)",
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ API access

  class ApiError extends Error {
    constructor(message, { status = 0, code = "network_error", retryAfterS = null } = {}) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfterS = retryAfterS;
    }
  }

  /** Seconds from a Retry-After header (delta-seconds or an HTTP date), or null. */
  function parseRetryAfter(value) {
    if (!value) return null;
    const seconds = Number(value);
    if (Number.isFinite(seconds)) return Math.max(0, seconds);
    const date = Date.parse(value);
    return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
  }

  /** A sentence a person can act on, for an error body from the API. */
  function describeError(status, error, retryAfterS) {
    const code = error && error.code;
    const detail = error && error.message ? ` (${error.message.replace(/\.$/, "")})` : "";
    if (status === 413) return `That is more than the service accepts in one request${detail}. Try fewer or smaller images.`;
    if (status === 429) {
      const wait = retryAfterS != null ? ` Try again in ${Math.ceil(retryAfterS)} s.` : " Try again shortly.";
      return `Too many requests right now.${wait}`;
    }
    if (code === "no_workers") return "No recognition workers are running, so nothing can be classified right now. Try again in a moment.";
    if (code === "store_unavailable") return "The service's job store is unavailable. Try again in a moment.";
    if (status === 503) return `The service is temporarily unavailable${detail}. Try again in a moment.`;
    if (status === 504) return "The service took too long to classify the drawing. Please try again.";
    if (status === 401) return "This server requires an API key: enter it under “Connection settings” at the bottom of the page.";
    if (status === 404) return `Not found${detail}. The job may have expired.`;
    if (status === 422 && code in ITEM_MESSAGES) return `${ITEM_MESSAGES[code]}${detail}.`;
    if (status >= 400 && status < 500) return `The service rejected the request${detail}.`;
    return `The service answered with an error (HTTP ${status})${detail}.`;
  }

  function authHeaders() {
    const key = $("api-key").value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  /** fetch() a JSON endpoint; resolve to the body, or reject with an ApiError. */
  async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
    const init = { method, signal, headers: { Accept: "application/json", ...authHeaders(), ...headers } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError("Can't reach the inkq service. Check your connection and that the server is running.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (response.ok && data !== null) return data;
    const retryAfterS = parseRetryAfter(response.headers.get("Retry-After"));
    const error = data && typeof data.error === "object" ? data.error : null;
    if (response.ok) {
      throw new ApiError(`Unexpected answer from the server (HTTP ${response.status}, not JSON).`, { status: response.status, code: "bad_response" });
    }
    throw new ApiError(describeError(response.status, error, retryAfterS), {
      status: response.status,
      code: (error && error.code) || `http_${response.status}`,
      retryAfterS,
    });
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** api() with retries on 429/503/network errors: Retry-After when given, else backoff with jitter. */
  async function apiWithRetry(path, options, onRetry) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await api(path, options);
      } catch (err) {
        const retriable = err instanceof ApiError && (err.status === 429 || err.status === 503 || err.status === 0);
        if (!retriable || attempt >= MAX_SUBMIT_RETRIES) throw err;
        const base = Math.min(8, 0.5 * 2 ** attempt);
        const waitS = err.retryAfterS != null ? err.retryAfterS : base / 2 + (base / 2) * Math.random();
        if (onRetry) onRetry(err, waitS);
        await sleep(waitS * 1000);
      }
    }
  }

  let limitsPromise = null;
  /** GET /v1/limits once; a failure is retried on the next call. */
  function getLimits() {
    if (!limitsPromise) {
      limitsPromise = api("v1/limits").catch((err) => {
        limitsPromise = null;
        throw err;
      });
    }
    return limitsPromise;
  }

  // ------------------------------------------------------------------ service status

  async function checkReady() {
    const pill = $("service-status");
    const text = pill.querySelector(".status-text");
    try {
      const response = await fetch("readyz", { headers: { Accept: "application/json" } });
      let body = null;
      try { body = await response.json(); } catch (_) { /* not JSON */ }
      if (response.ok) {
        pill.dataset.state = "ready";
        text.textContent = "Service ready";
      } else {
        pill.dataset.state = "degraded";
        const checks = (body && body.checks) || {};
        const reason = checks.redis && checks.redis !== "ok" ? "store unavailable"
          : checks.workers === 0 ? "has no workers" : "not ready";
        text.textContent = `Service ${reason}`;
      }
    } catch (_) {
      pill.dataset.state = "down";
      text.textContent = "Service unreachable";
    }
  }

  // ------------------------------------------------------------------ drawing pad

  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const strokes = [];          // each stroke: {width, points: [{x, y}]}, for undo and redraw
  let current = null;          // the stroke being drawn
  let activePointer = null;    // only one pointer draws at a time (palm rejection, multi-touch)
  let autoTimer = null;
  let predictAbort = null;

  function lineWidth(event) {
    const base = pad.width * STROKE_WIDTH_FRACTION;
    // A pen's pressure varies the width a little; mouse and touch report 0.5 or 0.
    return event.pointerType === "pen" && event.pressure > 0 ? base * (0.7 + 0.6 * event.pressure) : base;
  }

  function toCanvas(event) {
    const rect = pad.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) / rect.width) * pad.width,
      y: ((event.clientY - rect.top) / rect.height) * pad.height,
    };
  }

  const mid = (a, b) => ({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 });

  /**
   * One stroke as one path: straight to the first midpoint, then quadratic
   * curves with each sampled point as control and the midpoints as ends, so
   * corners come out smooth. Stroking the whole path once (not segment by
   * segment) keeps anti-aliased edges from piling up into a ragged outline.
   */
  function strokePath(stroke) {
    const pts = stroke.points;
    ctx.lineWidth = stroke.width;
    ctx.beginPath();
    if (pts.length === 1) {
      ctx.arc(pts[0].x, pts[0].y, stroke.width / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.moveTo(pts[0].x, pts[0].y);
    for (let i = 1; i < pts.length - 1; i++) {
      const end = mid(pts[i], pts[i + 1]);
      ctx.quadraticCurveTo(pts[i].x, pts[i].y, end.x, end.y);
    }
    const last = pts[pts.length - 1];
    ctx.lineTo(last.x, last.y);
    ctx.stroke();
  }

  let frameRequested = false;
  /** Repaint every stroke; cheap at this size, and batched to one paint per animation frame. */
  function redraw() {
    frameRequested = false;
    ctx.clearRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const stroke of strokes) strokePath(stroke);
    updateInkState();
  }

  function scheduleRedraw() {
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(redraw);
    }
  }

  function updateInkState() {
    pad.parentElement.classList.toggle("has-ink", strokes.length > 0);
  }

  function addPoint(event) {
    const p = toCanvas(event);
    const last = current.points[current.points.length - 1];
    if (Math.hypot(p.x - last.x, p.y - last.y) < 1.5) return;  // skip jitter
    current.points.push(p);
  }

  pad.addEventListener("pointerdown", (event) => {
    if (activePointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    activePointer = event.pointerId;
    pad.setPointerCapture(event.pointerId);
    clearTimeout(autoTimer);
    current = { width: lineWidth(event), points: [toCanvas(event)] };
    strokes.push(current);
    scheduleRedraw();
  });

  pad.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer || !current) return;
    event.preventDefault();
    const events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) addPoint(e);
    scheduleRedraw();
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    current = null;
    redraw();  // now, not next frame: an immediate predict must see the whole stroke
    activePointer = null;
    if ($("auto-predict").checked) {
      clearTimeout(autoTimer);
      autoTimer = setTimeout(predict, AUTO_PREDICT_DELAY_MS);
    }
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("contextmenu", (event) => event.preventDefault());

  function clearPad() {
    strokes.length = 0;
    current = null;
    clearTimeout(autoTimer);
    if (predictAbort) predictAbort.abort();
    redraw();
    showPrediction(null);
    hideAlert($("predict-error"));
  }

  function undo() {
    strokes.pop();
    redraw();
    if (strokes.length === 0) showPrediction(null);
    else if ($("auto-predict").checked) predict();
  }

  pad.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      predict();
    } else if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      clearPad();
    } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
    }
  });

  $("clear-btn").addEventListener("click", clearPad);
  $("undo-btn").addEventListener("click", undo);
  $("predict-btn").addEventListener("click", () => predict());

  // ------------------------------------------------------------------ prediction

  function showAlert(el, message, info = false) {
    el.textContent = message;
    el.classList.toggle("info", info);
    el.hidden = false;
  }

  function hideAlert(el) {
    el.hidden = true;
    el.textContent = "";
  }

  const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;

  function showPrediction(result) {
    const main = $("predict-main");
    const list = $("top5");
    list.replaceChildren();
    if (!result) {
      main.hidden = true;
      $("predict-empty").hidden = false;
      return;
    }
    $("predict-empty").hidden = true;
    main.hidden = false;
    $("predict-glyph").textContent = result.prediction;
    $("predict-text").textContent = result.prediction;
    $("predict-conf").textContent = `${pct(result.confidence)} confident`;
    for (const { label, prob } of result.top5 || []) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "label";
      name.textContent = label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.style.width = `${Math.max(0, Math.min(1, prob)) * 100}%`;
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "pct";
      value.textContent = pct(prob);
      li.setAttribute("aria-label", `${label}: ${pct(prob)}`);
      li.append(name, bar, value);
      list.append(li);
    }
  }

  async function predict() {
    clearTimeout(autoTimer);
    const errorBox = $("predict-error");
    if (strokes.length === 0) {
      showAlert(errorBox, "Draw a character on the pad first.", true);
      return;
    }
    hideAlert(errorBox);
    if (predictAbort) predictAbort.abort();
    const abort = new AbortController();
    predictAbort = abort;
    const result = $("predict-result");
    result.setAttribute("aria-busy", "true");
    $("predict-btn").disabled = true;
    try {
      const answer = await api("predict", { method: "POST", body: { image: pad.toDataURL("image/png") }, signal: abort.signal });
      showPrediction(answer);
    } catch (err) {
      if (err.name === "AbortError") return;
      showPrediction(null);
      showAlert(errorBox, err.message);
    } finally {
      if (predictAbort === abort) {
        predictAbort = null;
        result.setAttribute("aria-busy", "false");
        $("predict-btn").disabled = false;
      }
    }
  }

  // ------------------------------------------------------------------ bulk: choosing files

  let files = [];        // File objects, sorted by path
  let thumbs = [];       // object URLs, parallel to files
  let rows = [];         // result rows, parallel to files
  let jobs = [];         // {id, start, count, doc}
  let running = false;
  let cancelled = false;

  const isImage = (file) => IMAGE_TYPES.includes(file.type) || IMAGE_NAME.test(file.name);
  const pathOf = (file) => file.webkitRelativePath || file.relativePath || file.name;

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  function setFiles(list) {
    if (running) return;
    const all = Array.from(list);
    const images = all.filter(isImage).sort((a, b) => pathOf(a).localeCompare(pathOf(b), undefined, { numeric: true }));
    resetBulk();
    files = images;
    thumbs = files.map((f) => URL.createObjectURL(f));
    const skipped = all.length - images.length;
    const bytes = files.reduce((sum, f) => sum + f.size, 0);
    if (files.length === 0) {
      showAlert($("bulk-error"), skipped ? `None of the ${skipped} files is an image (PNG, JPEG, WebP, GIF, BMP).` : "No files chosen.");
      return;
    }
    $("selection-text").textContent =
      `${files.length} image${files.length === 1 ? "" : "s"} selected (${formatBytes(bytes)})` +
      (skipped ? ` · ${skipped} other file${skipped === 1 ? "" : "s"} skipped` : "");
    $("selection").hidden = false;
    $("submit-btn").disabled = false;
  }

  function resetBulk() {
    thumbs.forEach((url) => URL.revokeObjectURL(url));
    files = [];
    thumbs = [];
    rows = [];
    jobs = [];
    $("selection").hidden = true;
    $("progress-block").hidden = true;
    $("bulk-results").hidden = true;
    $("results-table").tBodies[0].replaceChildren();
    hideAlert($("bulk-error"));
    setProgress(0, 0, 0, "Queued");
  }

  /** Files inside dropped folders, via the (widely supported) webkitGetAsEntry API. */
  async function filesFromDrop(dataTransfer) {
    const entries = Array.from(dataTransfer.items || [])
      .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
      .filter(Boolean);
    if (entries.length === 0) return Array.from(dataTransfer.files || []);
    const out = [];
    async function walk(entry, prefix) {
      if (entry.isFile) {
        const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
        file.relativePath = prefix + file.name;
        out.push(file);
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        for (;;) {
          const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
          if (batch.length === 0) break;
          for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
        }
      }
    }
    for (const entry of entries) await walk(entry, "");
    return out;
  }

  const dropzone = $("dropzone");
  ["dragenter", "dragover"].forEach((type) =>
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("dragover");
    }),
  );
  ["dragleave", "drop"].forEach((type) =>
    dropzone.addEventListener(type, () => dropzone.classList.remove("dragover")),
  );
  dropzone.addEventListener("drop", async (event) => {
    event.preventDefault();
    try {
      setFiles(await filesFromDrop(event.dataTransfer));
    } catch (_) {
      showAlert($("bulk-error"), "Could not read the dropped files. Try “Choose files” instead.");
    }
  });
  $("file-input").addEventListener("change", (event) => setFiles(event.target.files));
  $("folder-input").addEventListener("change", (event) => setFiles(event.target.files));
  $("reset-btn").addEventListener("click", () => {
    resetBulk();
    $("file-input").value = "";
    $("folder-input").value = "";
  });

  // ------------------------------------------------------------------ bulk: submitting and polling

  // The file as a data URL named by its type where the browser knows it (one of
  // IMAGE_TYPES), else bare base64; the server reads the bytes either way.
  function readAsImageString(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const b64 = String(reader.result).split(",", 2)[1] || "";
        resolve(IMAGE_TYPES.includes(file.type) ? `data:${file.type};base64,${b64}` : b64);
      };
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  const encodedSize = (bytes) => DATA_URL_PREFIX_MAX + 4 * Math.ceil(bytes / 3) + PER_IMAGE_OVERHEAD_BYTES;

  /**
   * Split file indices into consecutive batches within the server's limits.
   * Files too big for any request become local per-item errors instead of
   * failing the whole upload.
   */
  function planBatches(sizes, limits) {
    const maxImages = Math.max(1, Number(limits.max_images_per_job) || 1000);
    const budget = (Number(limits.max_request_bytes) || Infinity) - BODY_OVERHEAD_BYTES;
    const maxImageBytes = Number(limits.max_image_bytes) || Infinity;
    const batches = [];
    const tooBig = [];
    let batch = [];
    let used = 0;
    sizes.forEach((raw, i) => {
      const size = encodedSize(raw);
      if (raw > maxImageBytes || size > budget) {
        tooBig.push(i);
        return;
      }
      if (batch.length && (batch.length >= maxImages || used + size > budget)) {
        batches.push(batch);
        batch = [];
        used = 0;
      }
      batch.push(i);
      used += size;
    });
    if (batch.length) batches.push(batch);
    return { batches, tooBig, maxImageBytes };
  }

  function setProgress(done, total, failed, status) {
    const percent = total ? Math.floor((100 * done) / total) : 0;
    const bar = $("bulk-progress");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-valuetext", `${percent}%, ${done} of ${total} images`);
    bar.classList.toggle("done", total > 0 && done >= total);
    $("progress-fill").style.width = `${percent}%`;
    $("progress-text").textContent = total ? `${done} / ${total} · ${percent}%${failed ? ` · ${failed} error${failed === 1 ? "" : "s"}` : ""}` : "0%";
    $("progress-status").textContent = status;
  }

  function setRunning(on) {
    running = on;
    $("submit-btn").disabled = on;
    $("reset-btn").disabled = on;
    $("cancel-btn").hidden = !on;
    $("file-input").disabled = on;
    $("folder-input").disabled = on;
  }

  async function submitBulk() {
    if (running || files.length === 0) return;
    const errorBox = $("bulk-error");
    hideAlert(errorBox);
    cancelled = false;
    rows = files.map((file) => ({ file: pathOf(file) }));
    jobs = [];
    $("bulk-results").hidden = true;
    $("progress-block").hidden = false;
    setRunning(true);
    try {
      setProgress(0, files.length, 0, "Checking limits…");
      const limits = await getLimits();
      const { batches, tooBig, maxImageBytes } = planBatches(files.map((f) => f.size), limits);
      for (const i of tooBig) {
        rows[i].error = {
          code: "image_too_large",
          message: `${formatBytes(files[i].size)} is over the service's limit` +
            (Number.isFinite(maxImageBytes) ? ` of ${formatBytes(maxImageBytes)}` : "") + "; not sent",
        };
      }
      for (let b = 0; b < batches.length; b++) {
        if (cancelled) break;
        const batch = batches[b];
        setProgress(0, files.length, tooBig.length, batches.length > 1 ? `Uploading part ${b + 1} of ${batches.length}…` : "Uploading…");
        const images = await Promise.all(batch.map((i) => readAsImageString(files[i])));
        const key = (crypto.randomUUID && crypto.randomUUID()) || `${Date.now()}-${Math.random()}`;
        const doc = await apiWithRetry(
          "v1/jobs",
          { method: "POST", body: { images }, headers: { "Idempotency-Key": key } },
          (err, waitS) => showAlert(errorBox, `${err.message} Retrying in ${Math.ceil(waitS)} s…`, true),
        );
        hideAlert(errorBox);
        jobs.push({ id: doc.id, indices: batch, doc });
      }
      await pollJobs(tooBig.length);
      await collectResults();
      renderResults();
    } catch (err) {
      showAlert(errorBox, err.message || "Something went wrong.");
      if (jobs.length) {
        const ids = jobs.map((j) => j.id).join(", ");
        showAlert(errorBox, `${err.message} Jobs already submitted keep running: ${ids}.`);
      }
      $("progress-status").textContent = "Stopped";
    } finally {
      setRunning(false);
    }
  }

  const FINISHED = new Set(["succeeded", "partially_succeeded", "failed", "cancelled"]);

  async function pollJobs(localErrors) {
    const total = files.length;
    for (;;) {
      let done = localErrors;
      let failed = localErrors;
      for (const job of jobs) {
        if (!FINISHED.has(job.doc.status)) {
          try {
            job.doc = await api(`v1/jobs/${encodeURIComponent(job.id)}`);
          } catch (err) {
            // A busy or briefly unreachable service is worth waiting out; anything else is not.
            if (!(err instanceof ApiError) || ![0, 429, 503].includes(err.status)) throw err;
            showAlert($("bulk-error"), `${err.message} Still trying…`, true);
            continue;
          }
        }
        done += job.doc.done || 0;
        failed += job.doc.failed || 0;
      }
      const allDone = jobs.every((job) => FINISHED.has(job.doc.status));
      const status = allDone ? (cancelled ? "Cancelled" : "Finished") : jobs.some((j) => j.doc.status === "running") ? "Classifying…" : "Queued…";
      setProgress(allDone && !cancelled ? total : done, total, failed, status);
      if (allDone) {
        hideAlert($("bulk-error"));
        return;
      }
      await sleep(POLL_INTERVAL_MS);
    }
  }

  async function collectResults() {
    setRunning(true);
    for (const job of jobs) {
      let url = `v1/jobs/${encodeURIComponent(job.id)}/results?offset=0&limit=1000`;
      while (url) {
        const page = await api(url);
        for (const item of page.items || []) {
          const row = rows[job.indices[item.index]];
          if (!row) continue;
          if (item.error) row.error = item.error;
          else Object.assign(row, { prediction: item.prediction, confidence: item.confidence, top5: item.top5 || [] });
        }
        url = page.next;
      }
      for (const i of job.indices) {
        if (!("prediction" in rows[i]) && !rows[i].error) {
          rows[i].error = { code: "not_processed", message: `job ${job.id} is ${job.doc.status}` };
        }
      }
    }
  }

  async function cancelJobs() {
    cancelled = true;
    $("cancel-btn").disabled = true;
    try {
      await Promise.all(
        jobs.filter((j) => !FINISHED.has(j.doc.status)).map(async (j) => {
          j.doc = await api(`v1/jobs/${encodeURIComponent(j.id)}`, { method: "DELETE" });
        }),
      );
    } catch (err) {
      showAlert($("bulk-error"), err.message);
    } finally {
      $("cancel-btn").disabled = false;
    }
  }

  $("submit-btn").addEventListener("click", submitBulk);
  $("cancel-btn").addEventListener("click", cancelJobs);

  // ------------------------------------------------------------------ bulk: results

  function renderResults() {
    const tbody = $("results-table").tBodies[0];
    const fragment = document.createDocumentFragment();
    rows.forEach((row, i) => {
      const tr = document.createElement("tr");
      if (row.error) tr.className = "errored";
      const cell = (text, className) => {
        const td = document.createElement("td");
        if (className) td.className = className;
        if (text !== undefined) td.textContent = text;
        tr.append(td);
        return td;
      };
      cell(String(i + 1), "num");
      const img = document.createElement("img");
      img.className = "thumb";
      img.src = thumbs[i];
      img.alt = "";
      img.loading = "lazy";
      img.width = 40;
      img.height = 40;
      img.addEventListener("error", () => {
        const none = document.createElement("span");
        none.className = "thumb thumb-none";
        none.textContent = "?";
        none.title = "No preview";
        img.replaceWith(none);
      }, { once: true });
      cell(undefined).append(img);
      cell(row.file, "file").title = row.file;
      if (row.error) {
        const td = cell(undefined, "err");
        td.colSpan = 2;
        td.textContent = `${ITEM_MESSAGES[row.error.code] || row.error.code}` +
          (row.error.message && !ITEM_MESSAGES[row.error.code] ? `: ${row.error.message}` : "");
        td.title = `${row.error.code}: ${row.error.message || ""}`;
      } else {
        cell(row.prediction, "pred");
        cell(pct(row.confidence), "num");
      }
      fragment.append(tr);
    });
    tbody.replaceChildren(fragment);
    const errored = rows.filter((r) => r.error).length;
    $("results-summary").textContent =
      `${rows.length - errored} of ${rows.length} image${rows.length === 1 ? "" : "s"} classified` +
      (errored ? `, ${errored} with errors` : "") + (jobs.length > 1 ? ` (${jobs.length} jobs)` : "");
    $("bulk-results").hidden = false;
  }

  function download(name, type, text) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  const csvCell = (value) => {
    const s = value == null ? "" : String(value);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };

  /** Same columns as `inkq submit --out x.csv`: file, prediction, confidence, top5, error. */
  function toCsv(list) {
    const lines = [["file", "prediction", "confidence", "top5", "error"].join(",")];
    for (const r of list) {
      const top5 = (r.top5 || []).map((p) => `${p.label}:${Number(p.prob).toFixed(4)}`).join(" ");
      const error = r.error ? `${r.error.code}: ${r.error.message || ""}` : "";
      const conf = r.confidence == null ? "" : Number(r.confidence).toFixed(4);
      lines.push([r.file, r.prediction, conf, top5, error].map(csvCell).join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }

  $("download-csv").addEventListener("click", () => download("inkq-results.csv", "text/csv", toCsv(rows)));
  $("download-json").addEventListener("click", () =>
    download("inkq-results.json", "application/json", JSON.stringify(rows, null, 1) + "\n"),
  );

  // ------------------------------------------------------------------ start

  $("settings-form").addEventListener("submit", (event) => event.preventDefault());
  const apiKeyInput = $("api-key");
  apiKeyInput.value = sessionStorage.getItem("inkq-api-key") || "";
  apiKeyInput.addEventListener("change", () => {
    sessionStorage.setItem("inkq-api-key", apiKeyInput.value.trim());
    limitsPromise = null;
    showLimits();
  });

  async function showLimits() {
    try {
      const limits = await getLimits();
      $("limits-text").textContent =
        `Up to ${limits.max_images_per_job} images per job and ${formatBytes(limits.max_image_bytes)} per image; ` +
        "larger selections are split into several jobs.";
    } catch (_) {
      $("limits-text").textContent = "";
    }
  }

  checkReady();
  setInterval(checkReady, READY_CHECK_MS);
  showLimits();
  updateInkState();

  // For tests and the curious: the pure helpers, without touching the page.
  window.inkq = { planBatches, parseRetryAfter, describeError, toCsv };
})();
