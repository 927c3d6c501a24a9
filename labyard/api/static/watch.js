// The watcher's page: a class member's terminal, read-only (protocol: labyard/api/looks.py).
// The terminal here takes no input (disableStdin) and the view's socket has no input path
// on the server either. Only when the learner grants it does this page open the separate
// input socket; it closes again when the learner takes the keyboard back.
import { Terminal } from "/static/vendor/xterm/lib/xterm.mjs";

const $ = (selector) => document.querySelector(selector);
const data = JSON.parse($("#watch-data").textContent);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const base = `/api/classes/${encodeURIComponent(data.class_id)}`;
const ACK_EVERY = 32 * 1024;
const FINAL = [4401, 4403, 4404, 4422];

const term = new Terminal({
  fontFamily: 'ui-monospace, "JetBrains Mono", "DejaVu Sans Mono", Menlo, monospace',
  fontSize: 13,
  disableStdin: true,
  cursorBlink: false,
  scrollback: 10000,
  theme: { background: "#05080b", foreground: "#dce6ef" },
});
term.open($("#watch-terminal"));
const state = $("#watch-state");
const encoder = new TextEncoder();
let view = null;
let keys = null;
let look = null;
let unacked = 0;

function say(text, typing = false) {
  state.textContent = text;
  state.classList.toggle("typing", typing);
}

function openKeyboard() {
  if (keys || !look) return;
  keys = new WebSocket(`${scheme}://${location.host}${base}/looks/${look.id}/input`);
  keys.binaryType = "arraybuffer";
  keys.onclose = () => {
    keys = null;
    term.options.disableStdin = true;
  };
  term.options.disableStdin = false;
  term.focus();
}

function closeKeyboard() {
  keys?.close();
  keys = null;
  term.options.disableStdin = true;
}

term.onData((text) => {
  // Only ever the granted input socket: the view's socket is never written keystrokes.
  if (keys?.readyState === WebSocket.OPEN) keys.send(encoder.encode(text));
});

/** Which machine and tab this is, with links to the playground's other machines. */
function showWhere(message) {
  const where = $("#watch-where");
  where.replaceChildren(`${message.machine} · tab ${message.tab}`);
  for (const machine of message.machines || []) {
    if (machine === message.machine) continue;
    const link = document.createElement("a");
    link.href = `?${new URLSearchParams({ machine, tab: data.tab })}`;
    link.textContent = machine;
    where.append(" · ", link);
  }
}

function control(message) {
  if (message.type === "look") {
    look = message;
    term.resize(message.cols, message.rows);
    showWhere(message);
    say(`Watching ${message.learner} (read-only).`);
  } else if (message.type === "size") {
    term.resize(message.cols, message.rows);
  } else if (message.type === "input") {
    if (message.granted) {
      say(`${look?.learner || "The learner"} lets you type.`, true);
      openKeyboard();
    } else {
      say(`Watching ${look?.learner || "the learner"} (read-only).`);
      closeKeyboard();
    }
  } else if (message.type === "error") {
    say(message.message);
    view.refused = true;
  }
}

function connect() {
  const query = new URLSearchParams({ tab: data.tab });
  if (data.machine) query.set("machine", data.machine);
  view = new WebSocket(`${scheme}://${location.host}${base}/members/${data.account_id}/watch?${query}`);
  view.binaryType = "arraybuffer";
  const socket = view;
  socket.onmessage = (event) => {
    if (typeof event.data === "string") return control(JSON.parse(event.data));
    const bytes = new Uint8Array(event.data);
    term.write(bytes, () => {
      unacked += bytes.length;
      if (unacked >= ACK_EVERY && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ type: "ack", bytes: unacked }));
        unacked = 0;
      }
    });
  };
  socket.onclose = (event) => {
    closeKeyboard();
    if (socket.refused && FINAL.includes(event.code)) return;
    if (!socket.refused) say("The view closed — reconnecting…");
    setTimeout(connect, event.code === 4409 ? 3000 : 1000);
  };
}

window.addEventListener("pagehide", () => {
  closeKeyboard();
  view?.close();
});
connect();
