// The verification page: one label and a grid of its candidate images; the volunteer marks
// those that show it (click, tap, or arrows + space) and submits with Enter. The next grid is
// leased and its images decoded while the current one is on screen.
(function () {
  "use strict";
  const root = document.getElementById("verifying");
  const projectId = root.dataset.project;
  const head = document.getElementById("verify-head");
  const gridBox = document.getElementById("grid");
  const bar = document.getElementById("verify-bar");
  const loading = document.getElementById("loading");
  const empty = document.getElementById("empty");
  const message = document.getElementById("message");
  const done = document.getElementById("grids-done");
  const submitButton = document.getElementById("submit");

  let current = null; // the grid on screen
  let upcoming = null; // a promise of the next grid (null when none was left)
  let focused = 0; // index of the item with the keyboard focus
  let sending = false;
  // An answer refused because the volunteer was signed out waits here (this tab only) and is
  // sent when the page opens again after signing in.
  const PENDING = `verify.pendingAnswer.${projectId}`;
  let signedOut = false; // then nothing acts: nothing could be saved
  // Grids leased to this page and not answered yet (the one on screen and the next): handed
  // back when the page is hidden or left (see handBack()).
  const held = new Map();
  let handedBack = false;

  function signOut(more) {
    signedOut = true;
    window.labeling.showSignedOut(message, root.dataset.loginUrl, more);
  }

  async function api(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": window.labeling.csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      const error = new Error(detail);
      error.status = response.status;
      throw error;
    }
    return response.status === 204 ? null : response.json();
  }

  function say(text, isError) {
    message.textContent = text;
    message.classList.toggle("error", Boolean(isError));
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // The next grid with its images decoded, or null when nothing is left; a failed request
  // is shown and retried, never taken for "nothing left".
  async function lease() {
    for (let attempt = 0; ; attempt++) {
      try {
        const grid = await api(`/api/projects/${projectId}/grids/`);
        if (grid) {
          held.set(grid.id, grid);
          if (handedBack) releaseHeld(); // the page was hidden while this grid was on its way
          await Promise.all(grid.items.map((item) => decoded(item.image.url)));
        }
        return grid;
      } catch (e) {
        if (e.status === 401) throw e; // signed out: no retry can succeed
        say(interpolate(gettext("Could not load the next grid (%s); retrying…"), [e.message]), true);
        await sleep(Math.min(2 ** attempt, 30) * 1000);
      }
    }
  }

  async function decoded(url) {
    const image = new Image();
    image.src = url;
    try { await image.decode(); } catch (e) { /* shown anyway; the browser retries */ }
  }

  // Columns that keep the grid on one screen: fewer on a phone, more for bigger grids.
  function columns(count) {
    const narrow = window.matchMedia("(max-width: 720px)").matches;
    if (narrow) return count > 16 ? 6 : 4;
    return count > 18 ? 8 : 6;
  }

  function show(grid) {
    // Hidden meanwhile, or a grid handed back while it was on its way: the page leases anew
    // when it shows again (resume()).
    if (handedBack || (grid && !held.has(grid.id))) return;
    current = grid;
    loading.hidden = true;
    if (!grid) {
      head.hidden = true;
      bar.hidden = true;
      gridBox.replaceChildren();
      empty.hidden = false;
      return;
    }
    document.getElementById("label-name").textContent = grid.label.display_name || grid.label.name;
    document.getElementById("label-wnid").textContent = grid.label.wnid;
    document.getElementById("label-gloss").textContent = grid.label.gloss;
    const examples = document.getElementById("examples");
    examples.replaceChildren(...grid.label.examples.map((url) => {
      const img = document.createElement("img");
      img.src = url;
      img.alt = interpolate(gettext("An example of %s"), [grid.label.display_name || grid.label.name]);
      return img;
    }));
    gridBox.style.setProperty("--columns", columns(grid.items.length));
    gridBox.replaceChildren(...grid.items.map((item, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "grid-item";
      button.dataset.item = item.id;
      button.setAttribute("aria-pressed", "false");
      button.tabIndex = index === 0 ? 0 : -1;
      const img = document.createElement("img");
      img.src = item.image.url;
      img.alt = interpolate(gettext("Candidate %s"), [index + 1]);
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.setAttribute("aria-hidden", "true");
      mark.textContent = "✓";
      button.append(img, mark);
      button.addEventListener("click", () => { moveTo(index); toggle(index); });
      return button;
    }));
    gridBox.dataset.grid = grid.id;
    head.hidden = false;
    bar.hidden = false;
    empty.hidden = true;
    focused = 0;
    gridBox.children[0].focus({ preventScroll: true });
    upcoming = lease();
    upcoming.catch(() => {}); // a failure (signed out) is handled where it is awaited
  }

  function items() { return Array.from(gridBox.children); }

  function toggle(index) {
    const item = items()[index];
    if (!item || sending) return;
    item.setAttribute("aria-pressed", item.getAttribute("aria-pressed") === "true" ? "false" : "true");
  }

  function moveTo(index) {
    const all = items();
    if (!all.length) return;
    focused = Math.max(0, Math.min(all.length - 1, index));
    all.forEach((item, i) => { item.tabIndex = i === focused ? 0 : -1; });
    all[focused].focus();
  }

  async function submit() {
    if (!current || sending) return;
    sending = true;
    const grid = current;
    const yes = items()
      .filter((item) => item.getAttribute("aria-pressed") === "true")
      .map((item) => Number(item.dataset.item));
    try {
      await api(`/api/grids/${grid.id}/answers/`, { yes });
      held.delete(grid.id);
      sessionStorage.removeItem(PENDING);
      done.textContent = String(Number(done.textContent) + 1);
      say("");
    } catch (e) {
      if (e.status === 401) {
        // The grid stays on screen with its marks; the answer is kept and sent once back.
        sessionStorage.setItem(PENDING, JSON.stringify({ grid: grid.id, yes }));
        signOut(gettext("Your answer on this grid is not saved yet: it is sent once you are back."));
        sending = false;
        return;
      }
      if (e.status === 409) {
        held.delete(grid.id);
        say(`${e.message} ${gettext("Here is the next one.")}`, true);
      } else {
        say(interpolate(gettext("Your answer was not saved (%s). Try again."), [e.message]), true);
        sending = false;
        return;
      }
    }
    let next;
    if (handedBack) { sending = false; return; } // hidden meanwhile: resume() leases anew
    try {
      next = await upcoming;
      // Nothing was left when the next grid was asked for; things may have freed up since.
      if (!next) next = await lease();
    } catch (e) {
      sending = false;
      if (e.status === 401) signOut(gettext("Then the verifying goes on here."));
      return;
    }
    sending = false;
    show(next);
  }

  submitButton.addEventListener("click", submit);

  // After signing in again: the answer refused while signed out, sent before anything else.
  async function sendPending() {
    const stored = sessionStorage.getItem(PENDING);
    if (!stored) return;
    const pending = JSON.parse(stored);
    try {
      await api(`/api/grids/${pending.grid}/answers/`, { yes: pending.yes });
      done.textContent = String(Number(done.textContent) + 1);
      say(gettext("Your answer from before signing in is saved."));
    } catch (e) {
      if (e.status === 401) throw e; // still signed out: keep it for the next visit
      say(`${gettext("Your answer from before signing in could not be saved:")} ${e.message}`, true);
    }
    sessionStorage.removeItem(PENDING);
  }

  document.addEventListener("keydown", (event) => {
    if (!current || signedOut || event.altKey || event.ctrlKey || event.metaKey) return;
    if (guide.isOpen()) return; // the guide's own keys (Esc closes it)
    if (event.key === "?") { guide.open(); event.preventDefault(); return; }
    const perRow = Number(gridBox.style.getPropertyValue("--columns")) || 1;
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -perRow, ArrowDown: perRow };
    if (event.key in moves) {
      event.preventDefault();
      moveTo(focused + moves[event.key]);
    } else if (event.key === " " || event.key === "Spacebar") {
      // On a button, space is the button's own click (a grid item toggles itself).
      if (event.target instanceof HTMLButtonElement) return;
      event.preventDefault();
      toggle(focused);
    } else if (event.key === "Enter") {
      event.preventDefault();
      submit();
    }
  });

  // The class guide on top of the grid: the label's definition and its examples, larger, opened
  // with ? or a tap on the label's name.
  const guide = (function () {
    const dialog = document.getElementById("guide");
    const opener = document.getElementById("guide-open");
    const close = document.getElementById("guide-close");
    opener.addEventListener("click", () => open());
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
    dialog.addEventListener("close", () => {
      const item = items()[focused];
      if (item) item.focus({ preventScroll: true });
    });
    function open() {
      if (!current || dialog.open) return;
      document.getElementById("guide-name").textContent = current.label.name;
      document.getElementById("guide-wnid").textContent = current.label.wnid;
      document.getElementById("guide-gloss").textContent = current.label.gloss;
      document.getElementById("guide-examples").replaceChildren(...current.label.examples.map((url) => {
        const img = document.createElement("img");
        img.src = url;
        img.alt = gettext("An example of %(name)s").replace("%(name)s", current.label.name);
        return img;
      }));
      document.getElementById("guide-none").hidden = current.label.examples.length > 0;
      dialog.showModal();
      close.focus();
    }
    return { isOpen: () => dialog.open, open };
  })();

  // Grids of a hidden or closed tab go back to the pool at once (a beacon survives the page's
  // end); when the page shows again, it leases anew. A grid still on its way when the page
  // hides is handed back as soon as it arrives (see lease()).
  function releaseHeld() {
    // A grid whose answer is on its way is not handed back: the answer counts.
    const answering = sending && current ? current.id : null;
    held.forEach((grid) => {
      if (grid.id === answering) return;
      const body = new URLSearchParams({ csrfmiddlewaretoken: window.labeling.csrfToken() });
      navigator.sendBeacon(`/api/grids/${grid.id}/release/`, body);
      held.delete(grid.id);
    });
  }

  function handBack() {
    if (handedBack || signedOut) return;
    handedBack = true;
    releaseHeld();
    current = null;
    upcoming = null;
  }

  async function resume() {
    if (!handedBack || signedOut) return;
    handedBack = false;
    head.hidden = true;
    bar.hidden = true;
    gridBox.replaceChildren();
    loading.hidden = false;
    try {
      show(await lease());
    } catch (e) {
      loading.hidden = true;
      if (e.status === 401) signOut(gettext("Then the verifying goes on here."));
      else say(e.message, true);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") handBack();
    else resume();
  });
  window.addEventListener("pagehide", handBack);
  window.addEventListener("pageshow", (event) => { if (event.persisted) resume(); });

  sendPending()
    .then(() => lease())
    .then(show)
    .catch((e) => {
      loading.hidden = true;
      if (e.status === 401) signOut(gettext("Then the verifying goes on here."));
      else say(e.message, true);
    });
})();
