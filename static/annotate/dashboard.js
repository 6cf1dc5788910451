// The dashboard's import form: drag and drop (or choose) files, upload them with a progress
// bar, then show what was created, what was a duplicate, and what was refused and why.
(function () {
  "use strict";
  const root = document.getElementById("import");
  const projectId = root.dataset.project;
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("import-files");
  const bar = document.getElementById("import-progress");
  const status = document.getElementById("import-status");
  const rejectedList = document.getElementById("import-rejected");
  const goldFromFolders = document.getElementById("import-gold-from-folders");

  const csrfToken = window.labeling.csrfToken;

  function upload(files) {
    if (!files.length) return;
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    if (goldFromFolders.checked) form.append("gold_from_folders", "true");
    const request = new XMLHttpRequest();
    request.open("POST", `/api/projects/${projectId}/images/`);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.responseType = "json";
    bar.hidden = false;
    bar.value = 0;
    rejectedList.replaceChildren();
    status.textContent = interpolate(ngettext("Uploading %s file…", "Uploading %s files…", files.length), [files.length]);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) bar.value = Math.round((100 * event.loaded) / event.total);
    };
    request.upload.onload = () => { status.textContent = gettext("Checking and storing…"); };
    request.onload = () => {
      bar.value = 100;
      const body = request.response || {};
      if (request.status !== 201) {
        status.textContent = interpolate(gettext("Refused: %s"), [window.labeling.errorText(body, request.statusText)]);
        return;
      }
      status.textContent = interpolate(gettext("Done: %s created, %s duplicates, %s rejected."), [body.created, body.duplicates, body.rejected.length]);
      for (const item of body.rejected) {
        const li = document.createElement("li");
        li.textContent = `${item.name}: ${item.reason}`;
        rejectedList.appendChild(li);
      }
    };
    request.onerror = () => { status.textContent = gettext("The upload failed (network error); nothing was half-stored. Try again."); };
    request.send(form);
  }

  input.addEventListener("change", () => upload(Array.from(input.files)));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    upload(Array.from(event.dataTransfer.files));
  });
})();
