// The playground page: a terminal tab per machine, the live countdown, and the
// Extend / Restart / Stop / Destroy buttons (JSON API calls with the CSRF header).
import { api, setRemaining } from "/static/app.js";
import { TerminalTab } from "/static/terminal.js";

const root = document.getElementById("playground");
const id = root.dataset.id;
const stateBadge = document.getElementById("state");
const countdown = document.getElementById("countdown");
const statusMsg = document.getElementById("status-msg");
// Why it stopped (its server drained), kept until it starts again; absent under a start's notice.
const storedNotice = document.getElementById("playground-notice");
const terminals = new Map(); // machine name -> TerminalTab, created when first shown
const editors = new Map(); // machine name -> EditorTab (static/editor.js, loaded when first shown)
window.labyard = { terminals, editors }; // for the browser console and tests
const POLL_MS = 15000;
// Server clock minus ours (whole seconds, from the page and then from Date headers), so a
// browser with a wrong clock still counts down the right time.
let skewMs = Date.parse(root.dataset.serverNow) - Date.now() || 0;

function select(machine, view = "terminal") {
  for (const tab of document.querySelectorAll(".tab")) {
    const shown = tab.dataset.machine === machine && (tab.dataset.view || "terminal") === view;
    tab.setAttribute("aria-selected", String(shown));
  }
  for (const pane of document.querySelectorAll(".terminal-pane, .editor-pane")) {
    const kind = pane.classList.contains("editor-pane") ? "editor" : "terminal";
    pane.hidden = pane.dataset.machine !== machine || kind !== view;
  }
  if (view === "editor") return showEditor(machine);
  const pane = document.getElementById(`term-${machine}`);
  if (!terminals.has(machine)) terminals.set(machine, new TerminalTab(pane, id, machine));
  terminals.get(machine).focus();
}

async function showEditor(machine) {
  if (!editors.has(machine)) {
    const { EditorTab } = await import("/static/editor.js");
    if (!editors.has(machine)) {
      editors.set(machine, new EditorTab(document.getElementById(`edit-${machine}`), id, machine));
    }
  }
  await editors.get(machine).show();
  return editors.get(machine);
}

function show(playground) {
  root.dataset.state = playground.state;
  stateBadge.textContent = playground.state;
  stateBadge.className = `badge state-${playground.state}`;
  setRemaining(countdown, (Date.parse(playground.expires_at) - Date.now() - skewMs) / 1000);
  for (const machine of playground.machines) {
    const tab = document.getElementById(`tab-${machine.name}`);
    const dot = tab && tab.querySelector(".dot");
    if (dot) dot.className = `dot state-${machine.state}`;
    if (tab) tab.title = `${machine.name}: ${machine.reason || machine.state}`;
  }
  if (storedNotice) {
    storedNotice.textContent = playground.notice || "";
    storedNotice.hidden = !playground.notice;
  }
  // A machine that failed says why, where the page reports what happens.
  const failed = playground.machines.filter((machine) => machine.reason).map((m) => m.reason);
  if (failed.length) say(failed.join(" "), true);
}

function say(text, error = false) {
  statusMsg.textContent = text;
  statusMsg.classList.toggle("error", error);
}

async function refresh() {
  try {
    const response = await fetch(`/api/playgrounds/${id}`, { credentials: "same-origin" });
    if (response.status === 404) {
      say("This playground no longer exists.", true);
      return;
    }
    if (!response.ok) return;
    const date = Date.parse(response.headers.get("Date"));
    if (date) skewMs = date - Date.now();
    show(await response.json());
  } catch {
    // Offline for a moment: the terminals show it; try again at the next poll.
  }
}

const ACTIONS = {
  extend: { busy: "Extending…", run: () => api("POST", `/api/playgrounds/${id}/extend`, { seconds: 900 }) },
  restart: { busy: "Restarting…", run: () => api("POST", `/api/playgrounds/${id}/restart`) },
  stop: { busy: "Stopping…", run: () => api("POST", `/api/playgrounds/${id}/stop`) },
  destroy: {
    busy: "Destroying…",
    confirm: "Destroy this playground and everything in it?",
    run: () => api("DELETE", `/api/playgrounds/${id}`),
  },
};

async function act(name, button) {
  const action = ACTIONS[name];
  if (action.confirm && !window.confirm(action.confirm)) return;
  const buttons = document.querySelectorAll("[data-action]");
  buttons.forEach((b) => (b.disabled = true));
  say(action.busy);
  try {
    const playground = await action.run();
    if (name === "destroy") {
      terminals.forEach((t) => t.dispose());
      location.assign("/playgrounds");
      return;
    }
    show(playground);
    say("");
    if (name === "restart") terminals.forEach((t) => t.reconnectNow());
  } catch (error) {
    say(error.message, true);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    button.blur();
  }
}

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => select(tab.dataset.machine, tab.dataset.view));
}
for (const button of document.querySelectorAll("[data-action]")) {
  button.addEventListener("click", () => act(button.dataset.action, button));
}
setInterval(refresh, POLL_MS);
document.addEventListener("visibilitychange", () => document.hidden || refresh());
select(document.querySelector(".tab").dataset.machine);
