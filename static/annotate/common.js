// Shared by the pages' scripts: the CSRF token Django set in its cookie, for POSTs to the API.
window.labeling = {
  csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  },
};
