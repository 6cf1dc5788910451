// The labeling page: lease an image, vote with one key, and show the next image at once.
// The next assignment is leased and its image decoded while the current one is on screen.
(function () {
  "use strict";
  const root = document.getElementById("labeling");
  const projectId = root.dataset.project;
  const labels = JSON.parse(document.getElementById("labels-data").textContent);
  const img = document.getElementById("image");
  const frame = img.closest(".frame");
  const empty = document.getElementById("empty");
  const loading = document.getElementById("loading");
  const message = document.getElementById("message");
  const count = document.getElementById("count");
  const suggestionBox = document.getElementById("suggestion"); // with buttons only
  // Read out by screen readers: the last vote and that a new image is on screen.
  const announcer = document.getElementById("announcer");
  let lastVoteSaid = "";
  let shownCount = 0;
  // Past a few dozen labels: a search box instead of a button per label (label_search.js).
  const search = root.dataset.searchable
    ? window.labeling.createLabelSearch({
      projectId,
      onPick: (labelId) => vote(labelId),
      onNone: () => vote(null),
    })
    : null;

  let current = null; // the assignment on screen
  let upcoming = null; // a promise of the next one (or null when none is left)
  const backlog = []; // assignments put aside by an undo, shown again before new ones
  let lastVote = null; // {assignment, at}: what U takes back
  // Every lease this page holds and has not answered (on screen, leased ahead, put aside by an
  // undo), from the moment the API grants it: what goes back when the page is hidden or left.
  const held = new Map();
  const UNDO_MS = 30000;
  const WAITING = gettext("The last images are with other volunteers right now; checking again shortly…");
  const today = document.getElementById("today");

  const csrfToken = window.labeling.csrfToken;
  // A vote refused because the volunteer was signed out waits here (this tab only) and is
  // sent when the page opens again after signing in.
  const PENDING_VOTE = `labeling.pendingVote.${projectId}`;
  let signedOut = false; // then no key acts: nothing could be saved

  function signOut(more) {
    signedOut = true;
    window.labeling.showSignedOut(message, root.dataset.loginUrl, more);
  }

  async function api(path, body, onNoContent) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);  // null: not JSON
      const error = new Error(window.labeling.errorText(body, response.statusText));
      error.status = response.status; // 401: signed out (in another tab, or the session ended)
      throw error;
    }
    if (response.status === 204) {
      if (onNoContent) onNoContent(response);
      return null;
    }
    return response.json();
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // The next assignment, or null when nothing is left for this volunteer. While the last
  // images are leased to others (204 with Retry-After) it waits and asks again; a failed
  // request is shown and retried, never mistaken for "nothing left".
  async function lease() {
    for (let attempt = 0; ; attempt++) {
      let retryAfter = null;
      try {
        const assignment = await api(`/api/projects/${projectId}/assignments/`, undefined,
          (response) => { retryAfter = response.headers.get("Retry-After"); });
        if (assignment) {
          held.set(assignment.id, assignment);
          if (handedBack) releaseHeld(); // the page was hidden while this lease was on its way
        }
        if (assignment || retryAfter === null) return preload(assignment);
        if (!current) say(WAITING);
      } catch (e) {
        if (e.status === 401) {
          if (!signedOut) signOut(gettext("Then the labeling goes on here."));
          throw e;
        }
        say(interpolate(gettext("Could not load the next image (%s); retrying…"), [e.message]), true);
        retryAfter = Math.min(2 ** attempt, 30);
      }
      await sleep(Number(retryAfter) * 1000);
    }
  }

  // The next lease, started now and awaited when the volunteer answers. Its failure (signed
  // out) is handled where it is awaited, so the browser must not report it as unhandled.
  function prefetch() {
    const promise = lease();
    promise.catch(() => {});
    return promise;
  }

  async function preload(assignment) {
    if (assignment) {
      const preload = new Image();
      preload.src = assignment.image.url;
      try { await preload.decode(); } catch (e) { /* shown anyway; the browser retries */ }
    }
    return assignment;
  }

  function say(text, isError) {
    message.textContent = text;
    message.classList.toggle("error", Boolean(isError));
  }

  function show(assignment) {
    current = assignment;
    loading.hidden = true;
    unzoom();
    announce(assignment);
    // Each image starts at the top: on a phone the image and the labels fit one screen from
    // there, and a page left scrolled after a tap would half hide the next image.
    if (window.scrollY || document.documentElement.scrollTop) window.scrollTo(0, 0);
    if (!assignment) {
      img.hidden = true;
      img.removeAttribute("src");
      img.dataset.assignment = "";
      empty.hidden = false;
      if (search) search.showFor(null);
      else { suggestionBox.hidden = true; markSuggested(null); }
      return;
    }
    img.src = assignment.image.url;
    img.width = assignment.image.width;
    img.height = assignment.image.height;
    img.dataset.assignment = assignment.id;
    img.hidden = false;
    empty.hidden = true;
    if (search) {
      search.showFor(assignment);
      return;
    }
    const suggestion = assignment.suggestion;
    const suggested = suggestion && labels.find((l) => l.id === suggestion.label);
    suggestionBox.hidden = !suggested;
    markSuggested(suggested ? suggested.id : null);
    if (suggested) {
      document.getElementById("suggestion-name").textContent = suggested.display_name || suggested.name;
      document.getElementById("suggestion-confidence").textContent =
        Math.round(suggestion.confidence * 100) + "%";
    }
  }

  // The suggested label's own button carries a mark and, for screen readers, the suggestion
  // line as its description.
  function markSuggested(labelId) {
    for (const button of document.querySelectorAll("#labels button[data-label]")) {
      const isSuggested = labelId !== null && button.dataset.label === String(labelId);
      button.classList.toggle("suggested", isSuggested);
      if (isSuggested) button.setAttribute("aria-describedby", "suggestion");
      else button.removeAttribute("aria-describedby");
    }
  }

  async function advance() {
    if (backlog.length) {
      show(backlog.pop());
      return;
    }
    const next = upcoming ? await upcoming : null;
    if (handedBack) return; // the page was hidden meanwhile: `next` went back with the rest
    upcoming = next ? prefetch() : null;
    if (next && message.textContent === WAITING) say("");
    show(next);
  }

  function act(path, body, onDone) {
    if (!current || signedOut) return;
    const assignment = current;
    current = null; // ignore further keys until the next image is on screen
    held.delete(assignment.id); // answered: never handed back (it would undo the answer)
    const shown = advance().catch((e) => { if (e.status !== 401) say(e.message, true); });
    api(`/api/assignments/${assignment.id}/${path}/`, body)
      .then((result) => { say(""); onDone(result); })
      .catch(async (e) => {
        if (e.status !== 401) { say(e.message, true); return; }
        // Never past an answer that was not saved: back to its image, and keep the vote.
        await shown;
        if (current && current !== assignment) backlog.push(current);
        show(assignment);
        if (path === "vote") {
          sessionStorage.setItem(PENDING_VOTE, JSON.stringify({ assignment: assignment.id, body }));
          signOut(gettext("Your vote on this image is not saved yet: it is sent once you are back."));
        } else {
          signOut(gettext("This image was not skipped."));
        }
      });
  }

  // After signing in again: the vote refused while signed out, sent before anything else.
  async function sendPendingVote() {
    const stored = sessionStorage.getItem(PENDING_VOTE);
    if (!stored) return;
    const pending = JSON.parse(stored);
    try {
      await api(`/api/assignments/${pending.assignment}/vote/`, pending.body);
      sessionStorage.removeItem(PENDING_VOTE);
      bump(count, 1);
      bump(today, 1);
      lastVote = { assignment: { id: pending.assignment }, at: Date.now() };
      say(gettext("Your vote from before signing in is saved."));
    } catch (e) {
      if (e.status === 401) throw e; // still signed out: keep it for the next visit
      sessionStorage.removeItem(PENDING_VOTE);
      say(interpolate(gettext("Your vote from before signing in could not be saved: %s"), [e.message]), true);
    }
  }

  function bump(element, by) {
    if (element) element.textContent = String(Number(element.textContent) + by);
  }

  function announce(assignment) {
    if (!announcer) return;
    const shown = assignment
      ? interpolate(gettext("Image %s on screen."), [++shownCount])
      : gettext("Nothing left to label.");
    announcer.textContent = lastVoteSaid ? `${lastVoteSaid} ${shown}` : shown;
    lastVoteSaid = "";
  }

  function labelName(labelId) {
    const label = labelId === null ? null : labels.find((l) => l.id === labelId);
    if (label) return label.display_name || label.name;
    if (search && labelId !== null) return search.labelName(labelId) || String(labelId);
    return labelId === null ? gettext("none of these") : String(labelId);
  }

  function vote(labelId) {
    const assignment = current;
    if (assignment) lastVoteSaid = interpolate(gettext("Voted: %s."), [labelName(labelId)]);
    if (assignment && search) search.remember(labelId);
    if (assignment && !signedOut) flash(labelId);
    act("vote", { label: labelId }, (result) => {
      bump(count, 1);
      bump(today, 1);
      lastVote = { assignment, at: Date.now() };
      if (result && result.image_state && result.image_state !== "open") progress.decided(1);
      progress.celebrate(Number(today.textContent));
    });
  }

  // The label just chosen flashes on its button, so the volunteer sees which one was taken.
  function flash(labelId) {
    const value = labelId === null ? "" : String(labelId);
    const button = Array.from(document.querySelectorAll("#labels button[data-label]"))
      .find((b) => b.dataset.label === value);
    if (!button) return;
    button.classList.remove("chosen");
    void button.offsetWidth; // restart the animation when the same label is chosen again
    button.classList.add("chosen");
    setTimeout(() => button.classList.remove("chosen"), 700);
  }

  // U: take back the last vote (within 30 s, while it decided nothing) and answer again.
  function undo() {
    if (!lastVote || Date.now() - lastVote.at > UNDO_MS) {
      say(gettext("Nothing to undo: votes can be taken back for 30 seconds."), true);
      return;
    }
    const target = lastVote.assignment;
    lastVote = null;
    api(`/api/assignments/${target.id}/undo/`)
      .then((assignment) => {
        held.set(assignment.id, assignment);
        bump(count, -1);
        bump(today, -1);
        if (current) backlog.push(current);
        say(gettext("Vote taken back: answer again."));
        show(assignment);
      })
      .catch((e) => (e.status === 401 ? signOut(gettext("Nothing was taken back.")) : say(e.message, true)));
  }

  // Z: the image at its natural size, or, when that is smaller, large enough to cover the
  // frame (a 256 px image must grow, not shrink into a corner). Each new image starts unzoomed.
  function unzoom() {
    frame.classList.remove("zoomed");
    img.style.width = "";
    img.style.height = "";
  }

  function toggleZoom() {
    if (frame.classList.contains("zoomed")) { unzoom(); return; }
    if (img.hidden || !img.naturalWidth) return;
    const fitted = frame.getBoundingClientRect();
    const scale = Math.max(1, fitted.width / img.naturalWidth, fitted.height / img.naturalHeight);
    img.style.width = `${Math.round(img.naturalWidth * scale)}px`;
    img.style.height = `${Math.round(img.naturalHeight * scale)}px`;
    frame.classList.add("zoomed");
  }

  function skip() {
    act("skip", undefined, () => {});
  }

  document.addEventListener("keydown", (event) => {
    // A held key must not vote on images the volunteer has not seen.
    if (event.repeat || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select")) return;
    if (guide.isOpen()) return; // the guide's own keys (Esc closes it)
    if (event.key === "?") { guide.open(); event.preventDefault(); return; }
    // Enter (or Space) on a focused button or link is that control's own click: a focused
    // label button votes for its label, not for the suggestion.
    if ((event.key === "Enter" || event.key === " ") && event.target.closest("button, a")) return;
    const key = event.key.toLowerCase();
    if (key === "0" || key === "n") { vote(null); event.preventDefault(); return; }
    if (key === "s") { skip(); event.preventDefault(); return; }
    if (key === "u") { undo(); event.preventDefault(); return; }
    if (key === "z") { toggleZoom(); event.preventDefault(); return; }
    if (key === "enter" && current && current.suggestion) { vote(current.suggestion.label); event.preventDefault(); return; }
    if (search && key === "/") { search.focus(); event.preventDefault(); return; }
    const suggested = search && /^[1-5]$/.test(key) ? search.suggested(Number(key)) : null;
    if (suggested !== null) { vote(suggested); event.preventDefault(); return; }
    const label = labels.find((l) => l.key && l.key === key);
    if (label) { vote(label.id); event.preventDefault(); }
  });

  document.getElementById("labels").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-label]");
    if (!button) return;
    // Focus moves to the image (not lost to the page): Enter then accepts the next
    // suggestion rather than clicking the same label again on the next image.
    frame.focus({ preventScroll: true });
    vote(button.dataset.label ? Number(button.dataset.label) : null);
  });
  document.getElementById("skip").addEventListener("click", () => { frame.focus({ preventScroll: true }); skip(); });
  img.addEventListener("click", toggleZoom);

  // The panel's progress and the class guide (label_panel.js).
  const progress = window.labeling.createProgress({ csrfToken, say, signOut });
  const guide = window.labeling.createGuide({
    suggestedLabel: () => (current && current.suggestion ? current.suggestion.label : null),
  });

  // Leases of a hidden or closed tab go back to the pool at once (a beacon survives the page's
  // end); when the page shows again, it leases anew. A lease still on its way when the page
  // hides is handed back as soon as it arrives (see lease()).
  let handedBack = false;
  function releaseBeacon(assignment) {
    if (!assignment) return;
    const body = new URLSearchParams({ csrfmiddlewaretoken: csrfToken() });
    navigator.sendBeacon(`/api/assignments/${assignment.id}/release/`, body);
  }

  function releaseHeld() {
    held.forEach(releaseBeacon);
    held.clear();
  }

  function handBack() {
    if (handedBack || signedOut) return;
    handedBack = true;
    releaseHeld();
    backlog.splice(0);
    current = null;
    upcoming = null;
  }

  async function resume() {
    if (!handedBack || signedOut) return;
    handedBack = false;
    img.hidden = true;
    loading.hidden = false;
    try {
      const first = await lease();
      if (handedBack) return; // hidden again meanwhile: `first` went back with the rest
      upcoming = first ? prefetch() : null;
      show(first);
    } catch (e) {
      loading.hidden = true;
      if (e.status !== 401) say(e.message, true);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") handBack();
    else resume();
  });
  window.addEventListener("pagehide", handBack);
  window.addEventListener("pageshow", (event) => { if (event.persisted) resume(); });

  if (search) {
    search.ready
      .then(() => { if (current) search.focus(); })
      .catch((e) => say(interpolate(gettext("%s; reload the page to try again."), [e.message]), true));
  }

  (async function start() {
    try {
      await sendPendingVote();
      const first = await lease();
      upcoming = first ? prefetch() : null;
      show(first);
    } catch (e) {
      loading.hidden = true;
      if (e.status === 401) { if (!signedOut) signOut(); } else say(e.message, true);
    }
  })();
})();
