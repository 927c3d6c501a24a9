// A challenge, tutorial or lesson page: the text on the left, the attempt's terminals on the
// right. Start creates an attempt (POST /api/attempts); the page follows its task states over
// server-sent events, updates the task widgets live, and shows the solution when allowed.
import { api, setRemaining } from "/static/app.js";
import { hideBanner, showBanner } from "/static/learn-banner.js";
import { enhanceCode } from "/static/learn-code.js";
import { TerminalSet } from "/static/learn-lab.js";
import { TaskWidgets } from "/static/learn-tasks.js";

const data = JSON.parse(document.getElementById("learn-data").textContent);
const $ = (id) => document.getElementById(id);
const lab = $("lab");
const startCard = $("lab-start");
const startButton = $("start");
const endButton = document.querySelector("[data-action=end]");
const terminals = lab ? new TerminalSet($("lab-tabs"), $("lab-terminals")) : null;
const tasks = new TaskWidgets($("learn-body"), answer);
const states = new Map(); // task name -> task JSON, for the progress meter
let attempt = null; // the attempt this page follows (JSON from the attempts API)
let events = null; // its EventSource while it is active
let shown = null; // the outcome the banner shows (solved, failed, ended), once per attempt
window.labyard = { terminals: terminals?.terminals, attempt: () => attempt };

function say(text, error = false) {
  const status = $("status-msg");
  if (!status) return;
  status.textContent = text;
  status.classList.toggle("error", error);
}

/** A start's one sentence on where its playground runs (another region than the learner's),
 *  above the terminals until the next start; none: hidden. */
function tell(notice) {
  const element = $("lab-notice");
  element.textContent = notice || "";
  element.hidden = !notice;
}

async function answer(task, value) {
  const path = `/api/attempts/${attempt.id}/tasks/${encodeURIComponent(task)}/input`;
  await api("POST", path, { value });
}

// -- starting and ending --------------------------------------------------------------------

async function start() {
  startButton.disabled = true;
  startButton.innerHTML = '<span class="spinner"></span> Starting…';
  $("start-error").hidden = true;
  try {
    if (attempt && attempt.state !== "active") {
      await api("DELETE", `/api/attempts/${attempt.id}`); // its machines go; a plan allows few
      terminals.close();
      lab.classList.remove("live");
      startCard.hidden = false;
    }
    hideBanner();
    shown = null;
    const started = await api("POST", "/api/attempts", { content: data.key });
    tell(started.notice);
    follow(started);
  } catch (error) {
    $("start-error").textContent = error.message;
    $("start-error").hidden = false;
  } finally {
    startButton.disabled = false;
    startButton.textContent = attempt ? "Start again" : "Start";
  }
}

async function end() {
  if (!window.confirm("End this attempt and destroy its machines?")) return;
  endButton.disabled = true;
  try {
    finish(await api("DELETE", `/api/attempts/${attempt.id}`));
  } catch (error) {
    say(error.message, true);
  } finally {
    endButton.disabled = false;
  }
}

async function restart(button) {
  button.disabled = true;
  await start();
  button.disabled = false;
}

// -- following an attempt -------------------------------------------------------------------

function follow(record) {
  attempt = record;
  apply(record);
  if (record.state === "active") subscribe(record.id);
  connect(record.playground_id);
}

async function connect(playgroundId) {
  if (!terminals || !playgroundId) return;
  const response = await fetch(`/api/playgrounds/${playgroundId}`, { credentials: "same-origin" });
  if (!response.ok) {
    if (attempt?.state === "active") say("The playground is gone.", true);
    return;
  }
  const playground = await response.json();
  const skew = Date.parse(response.headers.get("Date")) - Date.now() || 0;
  startCard.hidden = true;
  lab.classList.add("live");
  terminals.show(playground);
  const countdown = $("countdown");
  countdown.hidden = false;
  setRemaining(countdown, (Date.parse(playground.expires_at) - Date.now() - skew) / 1000);
}

function subscribe(id) {
  events?.close();
  const source = new EventSource(`/api/attempts/${encodeURIComponent(id)}/events`);
  source.addEventListener("state", (event) => apply(JSON.parse(event.data).attempt));
  source.addEventListener("task", (event) => update(JSON.parse(event.data).task));
  source.addEventListener("attempt", (event) => finish(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    // A refused stream (404, signed out) is not retried by the browser: look once more.
    if (source.readyState === EventSource.CLOSED && events === source) setTimeout(recheck, 3000);
  });
  events = source;
}

async function recheck() {
  try {
    const record = await api("GET", `/api/attempts/${attempt.id}`);
    apply(record);
    if (record.state === "active") subscribe(record.id);
  } catch (error) {
    say(error.message, true);
  }
}

function apply(record) {
  attempt = { ...attempt, ...record };
  tasks.setLive(record.state === "active");
  states.clear();
  record.tasks.forEach(update);
  if (record.state !== "active") finish(record);
  else showActive();
}

function update(task) {
  states.set(task.name, task);
  tasks.set(task);
  const checked = [...states.values()].filter((t) => !t.init);
  const done = checked.filter((t) => t.state === "completed").length;
  $("lab-progress").hidden = checked.length === 0;
  $("lab-meter").style.width = `${checked.length ? (100 * done) / checked.length : 0}%`;
  $("lab-count").textContent = `${done}/${checked.length} task${checked.length === 1 ? "" : "s"}`;
}

function showActive() {
  endButton.hidden = false;
  if (startButton) startButton.textContent = "Start again";
}

/** The attempt is over: `outcome` has `state` (solved|failed|ended) and `message`. */
function finish(outcome) {
  if (events && attempt?.id === (outcome.attempt_id || outcome.id)) {
    events.close();
    events = null;
  }
  attempt = { ...attempt, state: outcome.state, message: outcome.message };
  if (shown === outcome.state) return;
  shown = outcome.state;
  tasks.setLive(false, outcome.state === "ended");
  endButton.hidden = true;
  const again = { label: "Start again", run: restart, style: "ghost" };
  if (outcome.state === "solved") {
    const count = [...states.values()].filter((t) => !t.init).length;
    const detail = count === 1 ? "The task is done." : `All ${count} tasks are done.`;
    showBanner("solved", "Solved!", `${detail} Nicely done.`, [again]);
    loadSolution();
  } else if (outcome.state === "failed") {
    const restartAction = { label: "Restart", run: restart };
    showBanner("failed", "This attempt can no longer succeed", outcome.message || "", [restartAction]);
  } else {
    showBanner("ended", "This attempt has ended", outcome.message || "", [again]);
    terminals?.close();
    lab?.classList.remove("live");
    if (startCard) startCard.hidden = false;
    $("countdown").hidden = true;
  }
}

// -- the solution ---------------------------------------------------------------------------

async function loadSolution() {
  const section = $("solution");
  if (!data.signed_in || data.solution === "never" || !section.hidden) return;
  try {
    const found = await api("GET", `/api/solutions/${data.key}`);
    const body = section.querySelector(".solution-body");
    body.innerHTML = found.html; // server-rendered Markdown: raw HTML in it is escaped
    enhanceCode(body, run);
    section.hidden = false;
  } catch {
    // Not open to this learner (yet): nothing to show.
  }
}

function run(text, interrupt) {
  return terminals ? terminals.run(text, interrupt) : false;
}

enhanceCode($("learn-body"), run);
if (lab) {
  startButton?.addEventListener("click", start);
  endButton.addEventListener("click", end);
  if (data.attempt) follow(data.attempt);
}
if (data.solution === "always") loadSolution();
