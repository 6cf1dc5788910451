// Shared by the pages' scripts: the CSRF token Django set in its cookie, for POSTs to the API,
// and the API's error answers ({detail, code, fields?}) as one line for people.
window.labeling = {
  csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  },
  // The detail; when several fields are at fault (the detail then only says so), each one's
  // messages too. `fallback` when the body is not an API error (a proxy's page, no body).
  errorText(body, fallback) {
    if (!body || typeof body.detail !== "string") return fallback;
    const fields = Object.entries(body.fields || {});
    if (fields.length < 2) return body.detail;
    const named = fields.map(([name, messages]) => `${name}: ${messages.join(" ")}`);
    return `${body.detail} ${named.join("; ")}`;
  },
  // Signed out (the API answered 401): say so in `element`, with a link to the sign-in page
  // that comes back to this page, then `more` (what became of the last action).
  showSignedOut(element, loginUrl, more) {
    const here = encodeURIComponent(location.pathname + location.search).replace(/%2F/g, "/");
    const link = document.createElement("a");
    link.href = `${loginUrl}?next=${here}`;
    link.textContent = gettext("sign in again");
    element.replaceChildren(gettext("Signed out — "), link, `.${more ? " " + more : ""}`);
    element.classList.add("error");
  },
};
