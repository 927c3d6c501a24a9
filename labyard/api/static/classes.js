// Class pages: a member's page (start buttons, queue position, broadcasts) and the
// instructor board (the live grid, broadcasts, extra time, the end). Both follow the
// server's event streams; the server reads stored results, so watching runs no checks.
import { api, formatDuration } from "/static/app.js";

const $ = (selector) => document.querySelector(selector);

function ordinal(n) {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
  return `${n}${suffix}`;
}

function follow(path, handlers) {
  const source = new EventSource(path);
  for (const [kind, handle] of Object.entries(handlers)) {
    source.addEventListener(kind, (event) => handle(JSON.parse(event.data)));
  }
  return source;
}

// -- broadcasts: on the class page, and on the learning pages of its content ---------------

export function showBroadcasts(classId, container, handlers = {}) {
  const shown = new Set();
  return follow(`/api/classes/${encodeURIComponent(classId)}/events`, {
    ...handlers,
    broadcast: (message) => {
      if (shown.has(message.id)) return;
      shown.add(message.id);
      const banner = document.createElement("p");
      banner.className = "broadcast";
      banner.setAttribute("role", "status");
      banner.dataset.id = message.id;
      banner.textContent = message.message;
      container.prepend(banner);
    },
  });
}

// -- a member's class page ----------------------------------------------------------------

function memberPage(data) {
  const status = $("#start-status");
  const say = (text) => { if (status) status.textContent = text; };

  showBroadcasts(data.id, $("#broadcasts"), {
    class: ({ state }) => {
      $("#class-state").textContent = state;
      for (const button of document.querySelectorAll("button.start")) button.disabled = state !== "running";
      if (state === "ended") say("The class has ended.");
    },
  });
  if (!data.member) return;

  const path = `/api/classes/${encodeURIComponent(data.id)}/playground`;
  async function settle(found) {
    if (found.queued) {
      say(found.position > 0 ? `You are ${ordinal(found.position)} in the queue.` : "Your playground is starting…");
      setTimeout(poll, 1000);
      return;
    }
    window.location.assign(found.page);
  }
  async function poll() {
    try {
      await settle(await api("GET", path));
    } catch (error) {
      say(error.message);
    }
  }
  for (const button of document.querySelectorAll("button.start")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      say("Starting…");
      try {
        await settle(await api("POST", path, { content: button.dataset.key }));
      } catch (error) {
        say(error.message);
        button.disabled = false;
      }
    });
  }
  api("GET", path).then((found) => {
    const running = $("#running");
    if (found.queued) return settle(found);
    running.innerHTML = "";
    running.append(`Running: ${found.content} — `);
    const link = document.createElement("a");
    link.href = found.page;
    link.textContent = "open it";
    running.append(link);
  }).catch(() => {});
}

// -- the instructor board ------------------------------------------------------------------

function boardPage(data) {
  const base = `/api/classes/${encodeURIComponent(data.id)}`;
  const status = $("#room-status");
  const say = (text) => { status.textContent = text; };
  let latest = null;

  function cell(tag, text, className) {
    const element = document.createElement(tag);
    element.textContent = text;
    if (className) element.className = className;
    return element;
  }

  function render(board) {
    latest = board;
    $("#class-state").textContent = board.class.state;
    const head = document.createElement("tr");
    head.append(cell("th", "Learner", "learner"), cell("th", "Online"), cell("th", "Last progress"));
    for (const column of board.columns) {
      const th = cell("th", column.task);
      th.title = `${column.title} (${column.content})`;
      head.append(th);
    }
    head.append(cell("th", "Done"), cell("th", ""));
    $("#board thead").replaceChildren(head);
    const rows = [];
    for (const learner of board.learners) {
      const row = document.createElement("tr");
      row.dataset.account = learner.account_id;
      if (learner.stuck) row.classList.add("stuck");
      const name = cell("td", learner.name + (learner.removed ? " (removed)" : ""), "learner");
      if (learner.stuck) name.append(cell("span", " stuck", "badge"));
      const online = cell("td", learner.online ? "●" : "", learner.online ? "online" : "");
      online.dataset.online = learner.online ? "yes" : "no";
      const idle = cell("td", "", "idle");
      idle.dataset.since = learner.last_progress_at || "";
      row.append(name, online, idle);
      for (const column of board.columns) {
        const found = learner.cells[column.key] || {};
        const td = cell("td", found.completed_at ? "✓" : (found.state === "running" ? "…" : ""), found.state || "");
        td.dataset.task = column.key;
        if (found.completed_at) td.title = found.completed_at;
        row.append(td);
      }
      row.append(cell("td", `${learner.done}/${board.columns.length}`, "done"));
      const actions = document.createElement("td");
      if (!learner.removed) {
        const more = cell("button", "+10", "button small ghost");
        more.type = "button";
        more.addEventListener("click", () => extend(10, learner.account_id));
        actions.append(more);
        // Look over the learner's shoulder (read-only: static/watch.js, docs/classes.md).
        const watch = cell("a", "Watch", "button small ghost watch");
        watch.href = `/classes/${encodeURIComponent(data.id)}/watch/${learner.account_id}`;
        actions.append(watch);
      }
      row.append(actions);
      rows.push(row);
    }
    const share = document.createElement("tr");
    share.append(cell("td", "Share done", "learner"), cell("td", ""), cell("td", ""));
    for (const column of board.columns) {
      share.append(cell("td", `${Math.round((board.share_done[column.key] || 0) * 100)} %`, "share"));
    }
    share.append(cell("td", ""), cell("td", ""));
    rows.push(share);
    $("#board tbody").replaceChildren(...rows);
    const to = $("#broadcast-to");
    const chosen = to.value;
    to.replaceChildren(new Option("everybody", ""));
    for (const learner of board.learners) if (!learner.removed) to.append(new Option(learner.name, learner.account_id));
    to.value = chosen;
    paintIdle();
  }

  function paintIdle() {
    for (const element of document.querySelectorAll("#board td.idle")) {
      const since = element.dataset.since;
      element.textContent = since ? `${formatDuration((Date.now() - Date.parse(since)) / 1000)} ago` : "—";
    }
  }
  setInterval(paintIdle, 1000);

  async function extend(minutes, accountId) {
    try {
      const body = accountId ? { minutes, account_id: accountId } : { minutes };
      const { extended } = await api("POST", `${base}/extend`, body);
      say(`Extended ${extended.length} playground(s) by up to ${minutes} min.`);
    } catch (error) {
      say(error.message);
    }
  }
  for (const button of document.querySelectorAll("button.extend")) {
    button.addEventListener("click", () => extend(Number(button.dataset.minutes)));
  }
  $("#broadcast-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#broadcast-message");
    const to = $("#broadcast-to").value;
    try {
      const body = to ? { message: input.value, account_id: Number(to) } : { message: input.value };
      await api("POST", `${base}/broadcasts`, body);
      say("Sent.");
      input.value = "";
    } catch (error) {
      say(error.message);
    }
  });
  $("#end-class").addEventListener("click", async () => {
    if (!window.confirm("End the class? Every machine of it is destroyed; results stay.")) return;
    try {
      await api("POST", `${base}/end`);
      say("The class has ended.");
    } catch (error) {
      say(error.message);
    }
  });
  follow(`${base}/board/events`, { board: render });
  return () => latest;
}

const memberData = $("#class-data");
if (memberData) memberPage(JSON.parse(memberData.textContent));
const boardData = $("#board-data");
if (boardData) boardPage(JSON.parse(boardData.textContent));
