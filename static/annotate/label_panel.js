// The labeling page's panel beside the labels (issue 18): the volunteer's count today against
// a goal they set (kept on their account), the project's progress bar, a short thanks at
// milestones; and the class guide, each label's definition with a few decided images of it.
(function () {
  "use strict";
  const fill = (text, values) => text.replace(/%\((\w+)\)s/g, (_, name) => String(values[name]));

  // `say(text, isError)` and `signOut(more)` are the page's own message line and 401 handling.
  function createProgress({ csrfToken, say, signOut }) {
    const bar = document.getElementById("project-progress");
    const barText = document.getElementById("project-progress-text");
    const milestone = document.getElementById("milestone");
    const goalOf = document.getElementById("goal-of");
    const goal = document.getElementById("goal");
    const form = document.getElementById("goal-form");
    const input = document.getElementById("goal-input");
    let hideTimer = null;
    const goalValue = () => Number(goal.textContent) || 0;

    function thank(text) {
      milestone.textContent = text;
      milestone.hidden = false;
      clearTimeout(hideTimer);
      hideTimer = setTimeout(() => { milestone.hidden = true; }, 5000);
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const wanted = input.value === "" ? null : Number(input.value);
      try {
        const response = await fetch("/api/me/", {
          method: "PATCH",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
          body: JSON.stringify({ daily_goal: wanted }),
        });
        const body = await response.json().catch(() => null);
        if (response.status === 401) { signOut(gettext("Your goal was not saved.")); return; }
        if (!response.ok) { say(window.labeling.errorText(body, response.statusText), true); return; }
        goal.textContent = body.daily_goal === null ? "" : String(body.daily_goal);
        goalOf.hidden = body.daily_goal === null;
        form.closest("details").open = false;
        say(body.daily_goal === null
          ? gettext("No daily goal.")
          : fill(gettext("Goal saved: %(goal)s votes a day."), { goal: body.daily_goal }));
      } catch (e) {
        say(e.message, true);
      }
    });

    return {
      // `by` more images of the project decided (a vote that settled its image).
      decided(by) {
        bar.value = Math.min(bar.max, bar.value + by);
        barText.textContent = fill(gettext("%(done)s of %(total)s images decided"), { done: bar.value, total: bar.max });
      },
      // A short thanks when the goal is reached, and every 25 votes of the day.
      celebrate(votesToday) {
        if (goalValue() && votesToday === goalValue()) {
          thank(fill(gettext("Goal reached: %(count)s votes today. Thank you!"), { count: votesToday }));
        } else if (votesToday > 0 && votesToday % 25 === 0) {
          thank(fill(gettext("Thanks! %(count)s votes today."), { count: votesToday }));
        }
      },
    };
  }

  // Opened with ? (the page's key handler calls open()) or its button; Esc, the close button
  // or a tap beside it shuts it. Projects with the search box have no guide: their search list
  // shows each label's definition. `suggestedLabel()`: the label id to bring into view first.
  function createGuide({ suggestedLabel }) {
    const dialog = document.getElementById("guide");
    const opener = document.getElementById("guide-open");
    if (!dialog || !opener) return { isOpen: () => false, open() {} };
    const close = document.getElementById("guide-close");
    opener.addEventListener("click", () => open());
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
    function open() {
      if (dialog.open) return;
      dialog.showModal();
      const labelId = suggestedLabel();
      const entry = labelId === null ? null : document.getElementById(`guide-${labelId}`);
      if (entry) entry.scrollIntoView({ block: "nearest" });
      close.focus();
    }
    return { isOpen: () => dialog.open, open };
  }

  window.labeling.createProgress = createProgress;
  window.labeling.createGuide = createGuide;
})();
