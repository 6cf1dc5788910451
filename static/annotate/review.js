// The review page: one disputed or flagged image at a time, decided with one key; the next
// item's image is decoded in advance so the switch is instant.
(function () {
  "use strict";
  const root = document.getElementById("review");
  const projectId = root.dataset.project;
  const labels = JSON.parse(document.getElementById("labels-data").textContent);
  const img = document.getElementById("image");
  const empty = document.getElementById("empty");
  const loading = document.getElementById("loading");
  const message = document.getElementById("message");
  const votesList = document.getElementById("votes");
  const why = document.getElementById("why");
  const remaining = document.getElementById("remaining");

  let queue = []; // items not yet shown
  let current = null;
  const handled = new Set(); // items decided or passed over in this visit: never shown twice
  let queueCount = 0; // images waiting for a decision, as last counted by the server
  let lastAction = 0; // a decision's answer speaks only while it is still the latest action
  const inFlight = new Set(); // images whose decision is sent and not answered yet
  let fetches = 0; // queue reads answered so far
  let countedInFlight = new Set(); // of inFlight, those the last queue read still counted
  // Images whose decision this page saw saved. A queue read answered after that may still
  // list (and count) one of them: the server read the queue before the decision was stored.
  const saved = new Set();
  const labelName = (id) => {
    const label = labels.find((l) => l.id === id);
    return label ? label.display_name || label.name : gettext("none of these");
  };
  // Screen readers hear the last decision and that a new image is on screen.
  const announcer = document.getElementById("announcer");
  let lastSaid = "";

  const csrfToken = window.labeling.csrfToken;
  // A decision refused because the reviewer was signed out waits here (this tab only) and is
  // sent when the page opens again after signing in.
  const PENDING = `review.pendingDecision.${projectId}`;
  let signedOut = false; // then no key acts: nothing could be saved

  function signOut(more) {
    signedOut = true;
    window.labeling.showSignedOut(message, root.dataset.loginUrl, more);
  }

  function signedOutError() {
    const error = new Error(gettext("Signed out"));
    error.status = 401;
    return error;
  }

  function say(text, isError) {
    message.textContent = text;
    message.classList.toggle("error", Boolean(isError));
  }

  async function fetchQueue() {
    const response = await fetch(`/api/projects/${projectId}/review/`, { credentials: "same-origin" });
    if (response.status === 401) throw signedOutError();
    if (!response.ok) throw new Error(interpolate(gettext("could not load the queue (%s)"), [response.status]));
    const page = await response.json();
    queueCount = page.count - page.results.filter((item) => saved.has(item.id)).length;
    // Whether this count still holds the images whose decision is on its way: the queue's
    // page lists them while they are in it (see decide()).
    fetches++;
    countedInFlight = new Set(page.results.map((item) => item.id).filter((id) => inFlight.has(id)));
    showCount();
    queue = page.results.filter((item) => !handled.has(item.id));
    queue.slice(0, 2).forEach((item) => { new Image().src = item.url; });
  }

  function showCount() {
    remaining.textContent = interpolate(gettext("%s in the queue"), [queueCount]);
  }

  function renderVotes(item) {
    votesList.replaceChildren();
    const total = item.votes.reduce((sum, v) => sum + v.count, 0) || 1;
    for (const answer of item.votes) {
      const li = document.createElement("li");
      const title = document.createElement("div");
      const votes = interpolate(ngettext("%s vote", "%s votes", answer.count), [answer.count]);
      title.textContent = `${labelName(answer.label)} — ${votes}`;
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${Math.round((100 * answer.count) / total)}%`;
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", interpolate(gettext("%s of %s votes"), [answer.count, total]));
      const voters = document.createElement("div");
      voters.className = "voters";
      answer.voters.forEach((voter, i) => {
        const span = document.createElement("span");
        const accuracy = voter.estimated_accuracy === null ? gettext("new") : `${Math.round(voter.estimated_accuracy * 100)}%`;
        const unreliable = voter.unreliable ? `, ${gettext("unreliable")}` : "";
        span.textContent = `${i ? ", " : ""}${voter.username} (${accuracy}${unreliable})`;
        if (voter.unreliable) span.className = "unreliable";
        voters.appendChild(span);
      });
      li.append(title, bar, voters);
      votesList.appendChild(li);
    }
  }

  function show(item) {
    current = item;
    loading.hidden = true;
    if (announcer) {
      const shown = item ? interpolate(gettext("Image %s on screen."), [item.id]) : gettext("The review queue is empty.");
      announcer.textContent = lastSaid ? `${lastSaid} ${shown}` : shown;
      lastSaid = "";
    }
    if (!item) {
      img.hidden = true;
      img.dataset.image = "";
      empty.hidden = false;
      votesList.replaceChildren();
      why.textContent = "";
      return;
    }
    img.src = item.url;
    img.dataset.image = item.id;
    img.hidden = false;
    empty.hidden = true;
    const decided = item.decision
      ? " " + interpolate(gettext("Current decision: %s (%s)."), [item.decision.excluded ? gettext("excluded") : labelName(item.decision.label), item.decision.rule_display])
      : "";
    why.textContent = (item.state === "disputed" ? gettext("The crowd could not agree.") : item.flag_reason_display) + decided;
    renderVotes(item);
    const suggestion = document.getElementById("suggestion");
    suggestion.hidden = !item.suggestion;
    if (item.suggestion) {
      suggestion.textContent = interpolate(gettext("Model suggests %s (%s)."), [labelName(item.suggestion.label), `${Math.round(item.suggestion.confidence * 100)}%`]);
    }
  }

  async function next() {
    if (!queue.length) await fetchQueue();
    show(queue.shift() || null);
    if (queue[0]) new Image().src = queue[0].url;
  }

  function post(imageId, body) {
    return fetch(`/api/images/${imageId}/decision/`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    });
  }

  function decide(body) {
    if (!current || signedOut) return;
    const item = current;
    current = null;
    handled.add(item.id);
    const action = ++lastAction;
    lastSaid = interpolate(gettext("Decided: %s."), [body.exclude ? gettext("excluded") : labelName(body.label)]);
    // The decision is sent first, then the next image is shown (and the queue, when read again,
    // counts without this image).
    const sent = post(item.id, body);
    inFlight.add(item.id);
    const fetchesBefore = fetches;
    const shown = next().catch((e) => { if (e.status !== 401) say(e.message, true); });
    sent.then(async (response) => {
      inFlight.delete(item.id);
      if (response.status === 401) {
        // Never past a decision that was not saved: back to its image, and keep the decision.
        await shown;
        if (current && current !== item) queue.unshift(current);
        handled.delete(item.id);
        show(item);
        sessionStorage.setItem(PENDING, JSON.stringify({ image: item.id, body }));
        signOut(gettext("Your decision on this image is not saved yet: it is sent once you are back."));
        return;
      }
      if (!response.ok) {
        const body = await response.json().catch(() => null);  // null: not JSON
        const detail = window.labeling.errorText(body, response.statusText);
        say(interpolate(gettext("Image %s: %s"), [item.id, detail]), true);
      } else {
        saved.add(item.id);
        // Less one, unless the queue was read again meanwhile without this image in it.
        if (fetches === fetchesBefore || countedInFlight.has(item.id)) {
          queueCount = Math.max(0, queueCount - 1);
          showCount();
        }
        if (action === lastAction) say(interpolate(gettext("Image %s decided."), [item.id]));
      }
    }).catch((e) => { inFlight.delete(item.id); say(e.message, true); });
  }

  // After signing in again: the decision refused while signed out, sent before anything else.
  async function sendPending() {
    const stored = sessionStorage.getItem(PENDING);
    if (!stored) return;
    const pending = JSON.parse(stored);
    const response = await post(pending.image, pending.body);
    if (response.status === 401) throw signedOutError(); // still signed out: keep it
    sessionStorage.removeItem(PENDING);
    if (response.ok) {
      say(gettext("Your decision from before signing in is saved."));
    } else {
      const body = await response.json().catch(() => null);
      say(`${gettext("Your decision from before signing in could not be saved:")} ${window.labeling.errorText(body, response.statusText)}`, true);
    }
  }

  // S: on to the next image without deciding this one, which stays in the queue.
  function passOver() {
    if (signedOut) return;
    const item = current;
    current = null;
    handled.add(item.id);
    lastAction++;
    say(interpolate(gettext("Image %s passed over: it stays in the queue."), [item.id]));
    next().catch((e) => say(e.message, true));
  }

  document.addEventListener("keydown", (event) => {
    if (event.repeat || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === "0" || key === "n") { decide({ label: null }); event.preventDefault(); return; }
    if (key === "x") { decide({ label: null, exclude: true }); event.preventDefault(); return; }
    if (key === "s" && current) {
      passOver();
      event.preventDefault();
      return;
    }
    const label = labels.find((l) => l.key && l.key === key);
    if (label) { decide({ label: label.id }); event.preventDefault(); }
  });

  document.getElementById("labels").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    // Focus moves to the image rather than being lost to the page.
    img.closest(".frame").focus({ preventScroll: true });
    if (button.dataset.exclude) decide({ label: null, exclude: true });
    else decide({ label: button.dataset.label ? Number(button.dataset.label) : null });
  });
  document.getElementById("skip").addEventListener("click", () => {
    img.closest(".frame").focus({ preventScroll: true });
    if (current) passOver();
  });

  sendPending().then(next).catch((e) => {
    loading.hidden = true;
    if (e.status === 401) signOut(gettext("Then the review goes on here."));
    else say(e.message, true);
  });
})();
