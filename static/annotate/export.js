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
  const fill = (text, values) => text.replace(/%\((\w+)\)s/g, (_, name) => String(values[name]));
  const preview = document.getElementById("export-preview");
  const list = document.getElementById("exports-list");
  const none = document.getElementById("exports-none");

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
    const counted = p.total ? " " + interpolate(gettext("(%s of %s images)"), [p.done, p.total]) : "";
    text.textContent = interpolate(gettext("Export #%s: %s"), [exp.id, exp.state_display]) + counted;
    if (exp.state === "done") {
      const c = exp.counts.counts;
      text.textContent = interpolate(gettext("Export #%s done: %s train and %s val images in %s classes."), [exp.id, c.train, c.val, c.classes]);
      download.href = exp.urls.download;
      downloadGz.href = exp.urls.download_gzip;
      download.hidden = downloadGz.hidden = false;
    }
    if (exp.state === "failed") error.textContent = interpolate(gettext("Export failed: %s"), [exp.error]);
  }

  // Before the export starts: how many images the chosen options export, and what they leave
  // out (gold images unless included, classes under the minimum), from the API's count.
  let previewed = 0;
  async function showPreview() {
    const asked = ++previewed;
    const chosen = options();
    const query = new URLSearchParams({
      include_gold: String(chosen.include_gold),
      min_per_class: String(chosen.min_per_class || 2),
    });
    try {
      const counted = await call(`/api/projects/${projectId}/exports/preview/?${query}`);
      if (asked !== previewed) return; // a newer choice is being counted
      const parts = [fill(gettext("These options export %(images)s images in %(classes)s classes."), counted)];
      if (counted.left_out.gold) {
        parts.push(fill(gettext("%(gold)s gold images are left out (tick “Include gold images” to add them)."), counted.left_out));
      }
      if (counted.left_out.small_classes) {
        parts.push(fill(gettext("%(small_class_images)s images of %(small_classes)s classes with fewer than the minimum are left out."),
          counted.left_out));
      }
      preview.textContent = parts.join(" ");
      preview.dataset.images = String(counted.images);
    } catch (e) {
      if (asked === previewed) preview.textContent = fill(gettext("Could not count the images (%(error)s)."), { error: e.message });
    }
  }

  // The list of earlier exports, read again once an export ends, so the new one is in it.
  async function refreshList() {
    const page = await call(`/api/projects/${projectId}/exports/`);
    const exports = page.results || page;
    list.replaceChildren(...exports.slice(0, 20).map(exportRow));
    none.hidden = exports.length > 0;
  }

  function exportRow(exp) {
    const row = document.createElement("tr");
    const cell = (...content) => {
      const td = document.createElement("td");
      td.append(...content);
      row.append(td);
      return td;
    };
    const link = (href, text) => {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      return a;
    };
    cell(`#${exp.id}`);
    cell(String(exp.created_at).slice(0, 16).replace("T", " "));
    cell(exp.state_display).dataset.state = exp.state;
    const options = interpolate(gettext("val %s, seed %s"), [exp.val_fraction, exp.seed]);
    const resized = exp.resize ? `, ${exp.resize} px` : "";
    const blurred = exp.blur_faces ? `, ${gettext("faces blurred")}` : "";
    cell(`${options}, ${exp.val_layout}${resized}${blurred}`);
    if (exp.state === "done") {
      const tar = link(exp.urls.download, "tar");
      tar.setAttribute("download", "");
      cell(tar, " · ", link(exp.urls.manifest, gettext("manifest")));
    } else if (exp.error) {
      const span = document.createElement("span");
      span.className = "error";
      span.textContent = exp.error;
      cell(span);
    } else {
      cell("");
    }
    return row;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function follow(id) {
    for (let failures = 0; ;) {
      try {
        const exp = await call(`/api/exports/${id}/`);
        failures = 0;
        show(exp);
        if (exp.state === "done" || exp.state === "failed" || exp.state === "expired") {
          await refreshList().catch(() => {}); // the list is a convenience; the link above stays
          return;
        }
      } catch (e) {
        failures++;
        error.textContent = interpolate(gettext("Could not read the export's state (%s); retrying…"), [e.message]);
      }
      await sleep(failures ? Math.min(1000 * 2 ** failures, 15000) : 700);
      if (!failures) error.textContent = "";
    }
  }

  for (const id of ["include_gold", "min_per_class"]) {
    document.getElementById(id).addEventListener("input", showPreview);
    document.getElementById(id).addEventListener("change", showPreview);
  }
  showPreview();

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
