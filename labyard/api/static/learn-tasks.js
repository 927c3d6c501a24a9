// Task widgets: each `.task[data-task]` block of the rendered Markdown (content/markdown.py)
// gets a status line, a live hint and, for user-input tasks, an answer box. The block's
// #active text shows until the task is completed, then its #completed text.
const LABELS = {
  idle: "Start to check this task",
  created: "Waiting to be checked",
  blocked: "Waiting for an earlier task",
  running: "Checking as you work…",
  completed: "Done",
  failed: "Can no longer be completed",
};

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class TaskWidgets {
  /** `answer(task, value)` posts an answer and rejects with the API's message. */
  constructor(root, answer) {
    this.answer = answer;
    this.widgets = new Map();
    for (const block of root.querySelectorAll(".task[data-task]")) this.enhance(block);
  }

  enhance(block) {
    const name = block.dataset.task;
    const status = element("div", "task-status");
    const label = element("span", "task-label");
    status.append(element("span", "task-icon"), label);
    block.prepend(status);
    const completed = block.querySelector(".task-completed");
    block.classList.toggle("has-completed", Boolean(completed?.textContent.trim()));
    const hint = element("p", "task-hint");
    hint.hidden = true;
    block.querySelector(".task-active")?.after(hint);
    const widget = { block, label, hint, form: null };
    if (block.dataset.kind === "input") widget.form = this.inputForm(name, block);
    this.widgets.set(name, widget);
    this.show(widget, "idle", "");
  }

  inputForm(name, block) {
    const form = element("form", "task-input");
    const input = element("input");
    input.type = "text";
    input.name = "value";
    input.autocomplete = "off";
    input.placeholder = "Your answer";
    input.setAttribute("aria-label", `Answer for ${name}`);
    const button = element("button", "button small", "Check");
    button.type = "submit";
    const error = element("p", "task-error");
    error.setAttribute("role", "alert");
    error.hidden = true;
    form.append(input, button, error);
    form.addEventListener("submit", (event) => this.submit(event, name, form));
    block.querySelector(".task-active")?.append(form);
    return form;
  }

  async submit(event, name, form) {
    event.preventDefault();
    const input = form.querySelector("input");
    const error = form.querySelector(".task-error");
    form.querySelector("button").disabled = true;
    error.hidden = true;
    try {
      await this.answer(name, input.value);
      form.classList.add("sent");
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
      input.focus();
    } finally {
      form.querySelector("button").disabled = !this.live;
    }
  }

  /** Follow `task` ({name, state, hint} from the attempts API). */
  set(task) {
    const widget = this.widgets.get(task.name);
    if (widget) this.show(widget, task.state, task.hint);
  }

  show(widget, state, hint) {
    widget.block.dataset.state = state;
    widget.label.textContent = LABELS[state] || state;
    const showHint = Boolean(hint) && state !== "completed";
    widget.hint.hidden = !showHint;
    widget.hint.textContent = showHint ? hint : "";
    if (widget.form) {
      const open = this.live && state !== "completed" && state !== "failed";
      widget.form.querySelectorAll("input, button").forEach((x) => (x.disabled = !open));
    }
  }

  /** Whether an attempt runs (answers can be sent); `reset` puts every task back to idle. */
  setLive(live, reset = false) {
    this.live = live;
    for (const widget of this.widgets.values()) {
      const state = reset ? "idle" : widget.block.dataset.state;
      this.show(widget, state, reset ? "" : widget.hint.textContent);
    }
  }
}
