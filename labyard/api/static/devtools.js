// The authors' task panel beside a learning page's terminal (only on pages of authors and
// admins): every task of the attempt live, from GET /api/playgrounds/{id}/devtools once a
// second, with the last run of each check, and buttons to re-run or reset a task, reset the
// attempt, and run the solution one step at a time. Learners' pages never load this.
import { api } from "/static/app.js";

const POLL_MS = 1000;
const KINDS = { run: "check", hint: "hintcheck", fail: "failcheck" };
const panel = document.getElementById("devtools");
const body = document.getElementById("devtools-body");
const toggle = document.getElementById("devtools-toggle");
const lab = document.getElementById("lab");
let playgroundId = null;
let busy = false;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function action(label, run, title) {
  const node = element("button", "button ghost small", label);
  node.type = "button";
  if (title) node.title = title;
  node.addEventListener("click", async () => {
    node.disabled = true;
    try {
      render(await run());
    } catch (error) {
      say(error.message, true);
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

function say(text, error = false) {
  const status = panel.querySelector(".devtools-status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

function output(label, text) {
  const block = element("div", "devtools-output");
  block.append(element("span", "devtools-label", label));
  block.append(element("pre", "", text || "(empty)"));
  return block;
}

function checkRun(kind, run) {
  const box = element("div", "devtools-check");
  box.dataset.kind = kind;
  const head = element("div", "devtools-check-head");
  head.append(element("strong", "", KINDS[kind]));
  if (!run) {
    head.append(element("span", "muted", "not run yet"));
    box.append(head);
    return box;
  }
  const code = element("span", `devtools-exit ${run.exit_code === 0 ? "ok" : "nonzero"}`, `exit ${run.exit_code}`);
  head.append(code);
  if (run.duration_s !== null) head.append(element("span", "muted", `${(run.duration_s * 1000).toFixed(0)} ms`));
  if (run.timed_out) head.append(element("span", "devtools-exit nonzero", "timed out"));
  head.append(element("span", "muted", new Date(run.at).toLocaleTimeString()));
  box.append(head, output("stdout", run.stdout), output("stderr", run.stderr));
  return box;
}

function taskCard(task) {
  const card = element("section", "devtools-task");
  card.dataset.task = task.name;
  card.dataset.state = task.state;
  const head = element("div", "devtools-task-head");
  head.append(element("strong", "", task.name), element("span", `badge state-${task.state}`, task.state));
  head.append(element("span", "muted devtools-runs", `ran ${task.runs}×`));
  head.append(element("span", "muted", `${task.user}@${task.machine}`));
  if (task.looped) {
    const path = `/api/playgrounds/${playgroundId}/devtools/tasks/${encodeURIComponent(task.name)}`;
    const buttons = element("span", "devtools-actions");
    buttons.append(
      action("Re-run", () => api("POST", `${path}/rerun`), "Run this task's checks now"),
      action("Reset", () => api("POST", `${path}/reset`), "Back to the start (and the tasks that need it)"),
    );
    head.append(buttons);
  }
  card.append(head);
  if (task.waiting_for.length) {
    card.append(element("p", "devtools-waiting", `waits for: ${task.waiting_for.join(", ")}`));
  }
  if (task.hint) card.append(element("p", "devtools-hint", `hint shown: ${task.hint}`));
  const env = Object.entries(task.env);
  if (env.length) {
    const list = element("pre", "devtools-env");
    list.textContent = env.map(([k, v]) => `${k}=${v}`).join("\n");
    card.append(element("span", "devtools-label", "env"), list);
  }
  for (const [kind, run] of Object.entries(task.checks)) card.append(checkRun(kind, run));
  return card;
}

function solution(steps) {
  const section = element("section", "devtools-solution");
  section.append(element("h3", "", "Solution, step by step"));
  if (!steps.length) {
    section.append(element("p", "muted", "No solution.sh beside this item."));
    return section;
  }
  for (const step of steps) {
    const box = element("div", "devtools-step");
    box.dataset.step = step.index;
    const head = element("div", "devtools-check-head");
    head.append(element("strong", "", `${step.index + 1}. ${step.file}`), element("span", "muted", step.machine));
    head.append(
      action("Run", async () => {
        await api("POST", `/api/playgrounds/${playgroundId}/devtools/solution/${step.index}/run`);
        return api("GET", `/api/playgrounds/${playgroundId}/devtools`);
      }, "Run this step in its machine"),
    );
    box.append(head, element("pre", "devtools-script", step.script));
    if (step.last) {
      const last = element("div", "devtools-check-head");
      last.append(element("span", `devtools-exit ${step.last.exit_code === 0 ? "ok" : "nonzero"}`, `exit ${step.last.exit_code}`));
      box.append(last, output("stdout", step.last.stdout), output("stderr", step.last.stderr));
    }
    section.append(box);
  }
  return section;
}

function render(view) {
  if (!view) return;
  const attempt = view.attempt;
  const head = element("p", "devtools-attempt");
  head.append(element("span", `badge state-${attempt.state}`, attempt.state));
  if (attempt.message) head.append(element("span", "muted", ` ${attempt.message}`));
  if (view.checker?.paused) head.append(element("span", "muted", " (checks paused: nobody watching)"));
  // Keep the scroll position: the whole body is redrawn every second.
  const scroll = body.scrollTop;
  body.replaceChildren(head, ...view.tasks.map(taskCard), solution(view.solution));
  body.scrollTop = scroll;
}

async function poll() {
  const attempt = window.labyard?.attempt?.();
  playgroundId = attempt?.playground_id || null;
  toggle.hidden = !playgroundId;
  if (!playgroundId || panel.hidden || document.hidden || busy) return;
  busy = true;
  try {
    render(await api("GET", `/api/playgrounds/${playgroundId}/devtools`));
    say("");
  } catch (error) {
    say(error.message, true);
  } finally {
    busy = false;
  }
}

function show(open) {
  panel.hidden = !open;
  lab.classList.toggle("with-devtools", open);
  toggle.setAttribute("aria-pressed", String(open));
  poll();
}

toggle.addEventListener("click", () => show(panel.hidden));
panel.querySelector("[data-devtools=reset-all]").addEventListener("click", async (event) => {
  if (!playgroundId || !window.confirm("Reset every task of this attempt? The machines stay as they are.")) return;
  event.target.disabled = true;
  try {
    render(await api("POST", `/api/playgrounds/${playgroundId}/devtools/reset`));
  } catch (error) {
    say(error.message, true);
  } finally {
    event.target.disabled = false;
  }
});
setInterval(poll, POLL_MS);
show(true);
