// The labeling page's search box, for projects with more labels than keys (issue 15). The
// labels come once per page load from the API (the browser keeps them and revalidates with
// their ETag). Empty box: the model's top 5 for the image (keys 1-5), then the labels this
// volunteer used last. Typing filters by name, synonyms, WordNet id and definition, case- and
// accent-insensitively; arrows choose, Enter votes. An ARIA combobox with a listbox.
(function () {
  "use strict";
  const SHOWN = 50; // options listed at most; more words narrow the rest
  const RECENT = 8; // labels remembered as recently used

  // Fold like the API does (annotate.selectors.search_key): compatibility forms (full-width
  // letters) unified, accents dropped, case folded. CJK has no case or accents.
  function searchKey(text) {
    return text.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
  }

  function create({ projectId, onPick, onNone }) {
    const input = document.getElementById("label-search");
    const list = document.getElementById("label-options");
    const more = document.getElementById("label-more");
    const recentKey = `labeling.recent.${projectId}`;
    let labels = [];
    const byId = new Map();
    let suggestion = null; // the current image's {label, confidence, top}
    let options = []; // [{label, key, note}] as listed
    let active = -1;

    const ready = fetch(`/api/projects/${projectId}/labels/`, { credentials: "same-origin" })
      .then((response) => {
        if (!response.ok) throw new Error(interpolate(gettext("the labels could not be loaded (%s)"), [response.status]));
        return response.json();
      })
      .then((loaded) => {
        labels = loaded.map((label) => ({
          ...label,
          // The name in every language it has: a volunteer may type either.
          nameKey: searchKey([label.display_name || label.name, label.name, ...Object.values(label.names || {})].join(" ")),
          otherKey: searchKey([label.synonyms.join(" "), label.wnid].join(" ")),
          glossKey: searchKey(label.gloss),
        }));
        labels.forEach((label) => byId.set(label.id, label));
        input.disabled = false;
        input.placeholder = interpolate(ngettext("%s label: type to search", "%s labels: type to search", labels.length), [labels.length]);
        render();
      });

    function recent() {
      try {
        const ids = JSON.parse(localStorage.getItem(recentKey) || "[]");
        return Array.isArray(ids) ? ids.filter((id) => byId.has(id)) : [];
      } catch (e) {
        return []; // storage disabled or garbled: no recent labels, nothing else lost
      }
    }

    function remember(labelId) {
      if (labelId === null) return;
      const ids = [labelId, ...recent().filter((id) => id !== labelId)].slice(0, RECENT);
      try { localStorage.setItem(recentKey, JSON.stringify(ids)); } catch (e) { /* see recent() */ }
    }

    // Every word must occur somewhere. Labels rank by their weakest word: at the start of the
    // name, at the start of a word of it, inside it, in the synonyms or the id, in the
    // definition. Ties keep the page order.
    function wordRank(label, word) {
      if (label.nameKey.startsWith(word)) return 0;
      if (label.nameKey.includes(` ${word}`)) return 1;
      if (label.nameKey.includes(word)) return 2;
      if (label.otherKey.includes(word)) return 3;
      if (label.glossKey.includes(word)) return 4;
      return -1;
    }

    function matches(query) {
      const words = searchKey(query).split(/\s+/).filter(Boolean);
      const found = [];
      for (const label of labels) {
        let rank = 0;
        for (const word of words) {
          const wordAt = wordRank(label, word);
          if (wordAt < 0) { rank = -1; break; }
          rank = Math.max(rank, wordAt);
        }
        if (rank >= 0) found.push([rank, label]);
      }
      found.sort((a, b) => a[0] - b[0]);
      return found.map(([, label]) => label);
    }

    function topFive() {
      const top = suggestion ? suggestion.top || [] : [];
      return top.filter((item) => byId.has(item.label)).slice(0, 5);
    }

    function render() {
      const query = input.value.trim();
      if (query) {
        const found = matches(query);
        options = found.slice(0, SHOWN).map((label) => ({ label }));
        more.hidden = found.length > 0 && found.length <= SHOWN;
        more.textContent = found.length
          ? interpolate(gettext("%s more: type more words to narrow."), [found.length - SHOWN])
          : gettext("No label matches; try other words.");
      } else {
        const suggested = topFive().map((item, index) => ({
          label: byId.get(item.label),
          key: String(index + 1),
          note: `${gettext("model")} ${Math.round(item.probability * 100)}%`,
        }));
        const taken = new Set(suggested.map((option) => option.label.id));
        const used = recent().filter((id) => !taken.has(id))
          .map((id) => ({ label: byId.get(id), note: gettext("recently used") }));
        options = [...suggested, ...used];
        more.hidden = options.length > 0;
        more.textContent = gettext("Type to find the label.");
      }
      active = options.length ? 0 : -1;
      list.replaceChildren(...options.map(optionElement));
      highlight();
    }

    // Built from text nodes only: label names are data, never markup.
    function optionElement(option, index) {
      const { label } = option;
      const item = document.createElement("li");
      item.id = `label-option-${label.id}`;
      item.className = "label-option";
      item.setAttribute("role", "option");
      item.dataset.label = label.id;
      item.dataset.index = index;
      const line = document.createElement("span");
      line.className = "label-line";
      if (option.key) {
        const kbd = document.createElement("kbd");
        kbd.textContent = option.key;
        line.append(kbd, " ");
      }
      const name = document.createElement("span");
      name.className = "label-name";
      name.textContent = label.display_name || label.name;
      line.append(name, " ");
      const wnid = document.createElement("span");
      wnid.className = "muted";
      wnid.textContent = label.wnid;
      line.append(wnid);
      if (option.note) {
        const note = document.createElement("span");
        note.className = "label-note";
        note.textContent = option.note;
        line.append(" ", note);
      }
      item.append(line);
      const details = [];
      if (label.parent) details.push(interpolate(gettext("a kind of %s"), [label.parent.name || label.parent.wnid]));
      if (label.synonyms.length) details.push(interpolate(gettext("also: %s"), [label.synonyms.join(", ")]));
      if (label.gloss) details.push(label.gloss);
      if (details.length) {
        const about = document.createElement("span");
        about.className = "label-about muted small";
        about.textContent = details.join(" · ");
        item.title = details.join("\n");
        item.append(about);
      }
      return item;
    }

    function highlight() {
      Array.from(list.children).forEach((item, index) => {
        item.setAttribute("aria-selected", String(index === active));
      });
      const chosen = list.children[active];
      if (chosen) {
        input.setAttribute("aria-activedescendant", chosen.id);
        chosen.scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function move(by) {
      if (!options.length) return;
      active = (active + by + options.length) % options.length;
      highlight();
    }

    // The model's n-th suggestion (1-5) for the image on screen, or null.
    function suggested(n) {
      const item = topFive()[n - 1];
      return item ? item.label : null;
    }

    input.addEventListener("input", render);
    input.addEventListener("keydown", (event) => {
      if (event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
      const empty = input.value === "";
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        move(event.key === "ArrowDown" ? 1 : -1);
      } else if (event.key === "Enter") {
        if (!event.repeat && active >= 0) onPick(options[active].label.id);
      } else if (event.key === "Escape") {
        if (empty) input.blur();
        else { input.value = ""; render(); }
      } else if (empty && /^[1-5]$/.test(event.key)) {
        const labelId = suggested(Number(event.key));
        if (labelId !== null && !event.repeat) onPick(labelId);
      } else if (empty && event.key === "0") {
        if (!event.repeat) onNone();
      } else {
        return; // typing
      }
      event.preventDefault();
      event.stopPropagation();
    });
    // A click votes; the box keeps the focus (mousedown would take it).
    list.addEventListener("mousedown", (event) => event.preventDefault());
    list.addEventListener("click", (event) => {
      const item = event.target.closest("[data-label]");
      if (item) onPick(Number(item.dataset.label));
    });

    return {
      ready,
      suggested,
      remember,
      labelName: (id) => { const label = byId.get(id) || {}; return label.display_name || label.name; },
      // A new image on screen (or none): an empty box and its suggestions.
      showFor(assignment) {
        suggestion = assignment ? assignment.suggestion : null;
        input.value = "";
        render();
        if (assignment && !input.disabled) input.focus({ preventScroll: true });
      },
      focus: () => input.focus({ preventScroll: true }),
    };
  }

  window.labeling.createLabelSearch = create;
})();
