// The export page: start an export through the API, poll its progress, then offer the tar.
(function () {
  "use strict";
  const root = document.getElementById("export");
  const projectId = root.dataset.project;
  const form = document.getElementById("export-form");
  const start = document.getElementById("export-start");
  const status = document.getElementById("export-status");
  const bar = document.getElementById("export-progress");
  const text = document.getElementById("export-text");
  const download = document.getElementById("export-download");
  const downloadGz = document.getElementById("export-download-gz");
  const error = document.getElementById("export-error");

  const csrfToken = window.labeling.csrfToken;

  async function call(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
    let body = null;
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    if (!response.ok) throw new Error(window.labeling.errorText(body, response.statusText));
    return body;
  }

  function options() {
    const value = (id) => document.getElementById(id).value;
    const body = {
      val_fraction: Number(value("val_fraction")),
      seed: Number(value("seed")),
      val_layout: value("val_layout"),
      min_per_class: Number(value("min_per_class")),
      include_gold: document.getElementById("include_gold").checked,
      blur_faces: document.getElementById("blur_faces").checked,
    };
    if (value("resize") !== "") body.resize = Number(value("resize"));
    return body;
  }

  function show(exp) {
    const p = exp.progress;
    bar.value = p.fraction;
    const counted = p.total ? ` (${p.done} of ${p.total} images)` : "";
    text.textContent = `Export #${exp.id}: ${exp.state}${counted}`;
    if (exp.state === "done") {
      const c = exp.counts.counts;
      text.textContent = `Export #${exp.id} done: ${c.train} train and ${c.val} val images in ${c.classes} classes.`;
      download.href = exp.urls.download;
      downloadGz.href = exp.urls.download_gzip;
      download.hidden = downloadGz.hidden = false;
    }
    if (exp.state === "failed") error.textContent = `Export failed: ${exp.error}`;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function follow(id) {
    for (let failures = 0; ;) {
      try {
        const exp = await call(`/api/exports/${id}/`);
        failures = 0;
        show(exp);
        if (exp.state === "done" || exp.state === "failed" || exp.state === "expired") return;
      } catch (e) {
        failures++;
        error.textContent = `Could not read the export's state (${e.message}); retrying…`;
      }
      await sleep(failures ? Math.min(1000 * 2 ** failures, 15000) : 700);
      if (!failures) error.textContent = "";
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    download.hidden = downloadGz.hidden = true;
    start.disabled = true;
    try {
      const exp = await call(`/api/projects/${projectId}/exports/`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(options()),
      });
      status.hidden = false;
      show(exp);
      await follow(exp.id);
    } catch (e) {
      error.textContent = e.message;
    } finally {
      start.disabled = false;
    }
  });
})();
