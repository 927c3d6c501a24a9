// The terminals of a learning page: one tab per machine of the attempt's playground, each a
// TerminalTab from terminal.js (same WebSocket, reconnects and overlays as the playground page).
import { TerminalTab } from "/static/terminal.js";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The pane markup TerminalTab expects (as in playground.html). */
function pane(machine) {
  const section = element("section", "terminal-pane");
  section.setAttribute("role", "tabpanel");
  section.dataset.machine = machine;
  section.hidden = true;
  const overlay = element("div", "overlay");
  overlay.hidden = true;
  const box = element("div", "overlay-box");
  box.append(element("div", "spinner"), element("p", "overlay-text", "Connecting…"));
  overlay.append(box);
  section.append(element("div", "terminal-host"), overlay);
  return section;
}

export class TerminalSet {
  constructor(tabs, host) {
    this.tabs = tabs;
    this.host = host;
    this.playgroundId = null;
    this.panes = new Map(); // machine -> pane element
    this.terminals = new Map(); // machine -> TerminalTab, made when first shown
    this.current = null;
    this.encoder = new TextEncoder();
  }

  get open() {
    return this.playgroundId !== null;
  }

  /** Show a tab per machine of `playground` (from GET /api/playgrounds/{id}). */
  show(playground) {
    if (this.playgroundId === playground.id) return;
    this.close();
    this.playgroundId = playground.id;
    for (const machine of playground.machines) {
      const tab = element("button", "tab");
      tab.setAttribute("role", "tab");
      tab.dataset.machine = machine.name;
      tab.append(element("span", `dot state-${machine.state}`), machine.name);
      tab.addEventListener("click", () => this.select(machine.name));
      this.tabs.append(tab);
      const section = pane(machine.name);
      this.host.append(section);
      this.panes.set(machine.name, section);
    }
    this.select(playground.machines[0].name);
  }

  select(machine) {
    this.current = machine;
    for (const tab of this.tabs.children) {
      tab.setAttribute("aria-selected", String(tab.dataset.machine === machine));
    }
    for (const [name, section] of this.panes) section.hidden = name !== machine;
    if (!this.terminals.has(machine)) {
      this.terminals.set(machine, new TerminalTab(this.panes.get(machine), this.playgroundId, machine));
    }
    this.terminals.get(machine).focus();
  }

  /** Type `text` into the shown terminal and press Enter (Ctrl+C first with `interrupt`). */
  run(text, interrupt = false) {
    const terminal = this.terminals.get(this.current);
    if (!terminal || terminal.state !== "open") return false;
    const lines = text.replace(/\r?\n$/, "").replace(/\r?\n/g, "\r");
    terminal.input(this.encoder.encode(`${interrupt ? "\x03" : ""}${lines}\r`));
    terminal.focus();
    return true;
  }

  close() {
    this.terminals.forEach((t) => t.dispose());
    this.terminals.clear();
    this.panes.forEach((section) => section.remove());
    this.panes.clear();
    this.tabs.replaceChildren();
    this.playgroundId = null;
    this.current = null;
  }
}
