// Shared by every page: the JSON API with the CSRF header, live countdowns, Start feedback.

/** The double-submit CSRF token: the `labyard_csrf` cookie, echoed in X-CSRF-Token. */
export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)labyard_csrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** Call the JSON API; resolves to the parsed body (or null), rejects with the API's message. */
export async function api(method, path, body) {
  const headers = { "X-CSRF-Token": csrfToken() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error(data?.error?.message || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

/** `12:05` or `1:02:03`, as the server renders it (web.duration). */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

// Deadlines on the monotonic clock: a wrong wall clock in the browser does not matter.
const deadlines = new Map();

/** (Re)start the countdown of `element` at `seconds` left. */
export function setRemaining(element, seconds) {
  deadlines.set(element, performance.now() + seconds * 1000);
  paint(element);
}

function paint(element) {
  const left = (deadlines.get(element) - performance.now()) / 1000;
  element.textContent = left > 0 ? formatDuration(left) : "expired";
  element.classList.toggle("low", left > 0 && left < 300);
  element.classList.toggle("expired", left <= 0);
}

function startCountdowns() {
  for (const element of document.querySelectorAll(".countdown[data-remaining]")) {
    setRemaining(element, Number(element.dataset.remaining));
  }
  setInterval(() => deadlines.forEach((_, element) => paint(element)), 1000);
}

/** Start buttons: say what is happening while the machines boot; no double starts. */
function startForms() {
  for (const form of document.querySelectorAll("form.start-form")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.busy) {
        event.preventDefault();
        return;
      }
      form.dataset.busy = "1";
      const button = form.querySelector("button");
      button.disabled = true;
      button.innerHTML = '<span class="spinner"></span> Starting…';
    });
  }
}

// Coming back with the Back button restores the page as it was left: busy.
window.addEventListener("pageshow", (event) => {
  if (event.persisted && document.querySelector("form.start-form[data-busy]")) location.reload();
});

startCountdowns();
startForms();
