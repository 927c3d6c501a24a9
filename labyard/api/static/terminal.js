// One browser terminal bound to one tab of one machine, over the terminal WebSocket
// (protocol: labyard/api/terminals.py). It never gives up on a dropped connection: an
// overlay says so and it reconnects with backoff; the server reattaches the same tmux tab.
import { Terminal } from "/static/vendor/xterm/lib/xterm.mjs";
import { FitAddon } from "/static/vendor/xterm-addon-fit/addon-fit.mjs";
import { WebLinksAddon } from "/static/vendor/xterm-addon-web-links/addon-web-links.mjs";
import { showLooks } from "/static/looks.js";

// Close codes after which retrying cannot help (4000 + the HTTP status of the refusal).
const FINAL = {
  4401: "You are signed out. Sign in again to reconnect.",
  4403: "This terminal refused the connection.",
  4404: "This machine is gone (or it is not yours).",
  4422: "The terminal request was invalid.",
};
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
const MAX_BACKOFF_MS = 10000;
// Tell the server every so often how much output has been rendered (flow control).
const ACK_EVERY = 32 * 1024;

const THEME = {
  background: "#05080b",
  foreground: "#dce6ef",
  cursor: "#4ade80",
  cursorAccent: "#05080b",
  selectionBackground: "#2a4a6b",
  scrollbarSliderBackground: "rgba(135, 151, 168, 0.18)",
  scrollbarSliderHoverBackground: "rgba(135, 151, 168, 0.35)",
  scrollbarSliderActiveBackground: "rgba(135, 151, 168, 0.5)",
  black: "#1b232c", red: "#f87171", green: "#4ade80", yellow: "#fbbf24",
  blue: "#60a5fa", magenta: "#c084fc", cyan: "#22d3ee", white: "#dce6ef",
  brightBlack: "#5b6b7c", brightRed: "#fca5a5", brightGreen: "#86efac", brightYellow: "#fde68a",
  brightBlue: "#93c5fd", brightMagenta: "#d8b4fe", brightCyan: "#67e8f9", brightWhite: "#ffffff",
};

export class TerminalTab {
  constructor(pane, playgroundId, machine, tab = "main") {
    this.pane = pane;
    this.url = `/api/playgrounds/${encodeURIComponent(playgroundId)}/machines/${encodeURIComponent(machine)}/terminal`;
    this.tab = tab;
    this.overlay = pane.querySelector(".overlay");
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.state = "idle"; // idle | connecting | open | waiting | exited | final
    this.unacked = 0;
    this.fresh = false; // no output yet on the current connection
    this.encoder = new TextEncoder();
    this.term = new Terminal({
      fontFamily: 'ui-monospace, "JetBrains Mono", "Cascadia Code", "DejaVu Sans Mono", Menlo, monospace',
      fontSize: 14,
      lineHeight: 1.15,
      cursorBlink: true,
      scrollback: 10000, // as many lines as the server replays on reattach
      theme: THEME,
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.loadAddon(new WebLinksAddon());
    this.term.open(pane.querySelector(".terminal-host"));
    this.term.attachCustomKeyEventHandler((event) => this.clipboardKey(event));
    this.term.onData((data) => this.input(this.encoder.encode(data)));
    this.term.onBinary((data) => this.input(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    this.term.onResize(({ cols, rows }) => this.control({ type: "resize", cols, rows }));
    new ResizeObserver(() => this.refit()).observe(pane);
    window.addEventListener("online", () => this.reconnectNow());
    this.overlay.addEventListener("click", () => this.reconnectNow());
    this.showOverlay("Connecting…", false);
    this.refit();
    this.connect();
  }

  /**
   * Copy and paste the way learners expect in a browser (false = xterm leaves the key to
   * the browser, whose copy/paste events xterm handles): Ctrl+V and Ctrl+Shift+V paste
   * (pasting tutorial commands beats shell's quoted-insert; vim users have Ctrl+Q for block
   * mode); Ctrl+C copies when text is selected and interrupts otherwise; Ctrl+Shift+C copies.
   */
  clipboardKey(event) {
    if (!event.ctrlKey || event.altKey || event.metaKey) return true;
    const key = event.key.toLowerCase();
    if (key === "v") return false;
    if (key === "c" && event.shiftKey) {
      event.preventDefault(); // Chrome would open the element inspector
      if (event.type === "keydown" && this.term.hasSelection()) {
        navigator.clipboard?.writeText(this.term.getSelection());
      }
      return false;
    }
    if (key === "c" && this.term.hasSelection()) {
      if (event.type === "keyup") setTimeout(() => this.term.clearSelection());
      return false;
    }
    return true;
  }

  /** Fit the terminal to its pane (not while the pane is hidden: it has no size then). */
  refit() {
    if (this.pane.offsetWidth > 0 && this.pane.offsetHeight > 0) this.fit.fit();
  }

  focus() {
    this.refit();
    this.term.focus();
  }

  connect() {
    clearTimeout(this.timer);
    this.state = "connecting";
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ tab: this.tab, cols: this.term.cols, rows: this.term.rows });
    const ws = new WebSocket(`${scheme}://${location.host}${this.url}?${query}`);
    ws.binaryType = "arraybuffer";
    performance.mark(`labyard:${this.url}:connect`); // for bench/browser_first_prompt.py
    ws.onopen = () => {
      performance.mark(`labyard:${this.url}:open`);
      this.unacked = 0;
      this.state = "open";
      this.fresh = true;
      showLooks(this.pane, []); // the server says again who is watching, if anyone
    };
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event);
    this.ws = ws;
  }

  receive(ws, data) {
    if (typeof data === "string") {
      const message = JSON.parse(data);
      if (message.type === "exit") this.exited(message.code);
      else if (message.type === "error") ws.errorMessage = message.message;
      else if (message.type === "looks") showLooks(this.pane, message.looks);
      return;
    }
    if (this.fresh) {
      performance.mark(`labyard:${this.url}:output`);
      // The server replays the tab's history and tmux redraws the screen: start clean,
      // but only now, so a refused reconnect leaves the old screen visible.
      this.term.reset();
      this.fresh = false;
    }
    if (!this.overlay.hidden) this.hideOverlay();
    this.attempt = 0;
    const bytes = new Uint8Array(data);
    this.term.write(bytes, () => {
      this.unacked += bytes.length;
      if (this.unacked >= ACK_EVERY) {
        this.control({ type: "ack", bytes: this.unacked });
        this.unacked = 0;
      }
    });
  }

  closed(ws, event) {
    if (ws !== this.ws || this.state === "exited") return;
    if (FINAL[event.code]) {
      this.state = "final";
      this.showOverlay(ws.errorMessage || FINAL[event.code], true);
      return;
    }
    const delay = Math.min(BACKOFF_MS[this.attempt] ?? MAX_BACKOFF_MS, MAX_BACKOFF_MS);
    this.attempt += 1;
    this.state = "waiting";
    const why = ws.errorMessage || event.reason || "Connection lost";
    const next = event.code === 4409 ? "waiting for it to run again" : "reconnecting";
    this.showOverlay(`${why} — ${next}…`, false);
    this.timer = setTimeout(() => this.connect(), delay * (0.8 + Math.random() * 0.4));
  }

  exited(code) {
    this.state = "exited";
    this.showOverlay(`The shell exited (code ${code}). Press Enter for a new one.`, true);
  }

  /** Reconnect at once (after Restart, or when the network is back), unless refused for good. */
  reconnectNow() {
    if (this.state === "waiting" || this.state === "exited") {
      this.attempt = 0;
      this.connect();
    }
  }

  input(bytes) {
    if (this.state === "exited") {
      if (bytes.includes(13)) this.reconnectNow();
      return;
    }
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  control(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  showOverlay(text, final) {
    this.overlay.querySelector(".overlay-text").textContent = text;
    this.overlay.classList.toggle("final", final);
    this.overlay.hidden = false;
  }

  hideOverlay() {
    this.overlay.hidden = true;
  }

  dispose() {
    clearTimeout(this.timer);
    this.state = "final";
    this.ws?.close();
    this.term.dispose();
  }
}
