// The terminals of a learning page: one tab per machine of the attempt's playground, each a
// TerminalTab from terminal.js (same WebSocket, reconnects and overlays as the playground page),
// and beside each an editor tab (static/editor.js, loaded when first shown). The text's
// `::open-file` buttons and `open-file:[MACHINE:]PATH` links open a file in the editor tab.
import { TerminalTab } from "/static/terminal.js";

const OPEN_FILE = 'button.open-file, a[href^="open-file:"]';

/** Where an open-file button or link points: {path, machine, user} (null: the shown one). */
function fileTarget(node) {
  if (node.matches("button.open-file")) {
    const { path, machine = null, user = null } = node.dataset;
    return { path, machine, user };
  }
  const spec = decodeURIComponent(node.getAttribute("href").slice("open-file:".length));
  const named = spec.match(/^([A-Za-z0-9_-]+):(.+)$/);
  return named ? { machine: named[1], path: named[2], user: null } : { machine: null, path: spec, user: null };
}

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
    this.editorPanes = new Map(); // machine -> editor pane element
    this.editors = new Map(); // machine -> EditorTab, made when first shown
    this.current = null;
    this.encoder = new TextEncoder();
    document.addEventListener("click", (event) => {
      const link = event.target.closest(OPEN_FILE);
      if (!link) return;
      event.preventDefault();
      if (this.open) this.openFile(fileTarget(link));
    });
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
      const editorTab = element("button", "tab tab-editor", `${machine.name} · editor`);
      editorTab.setAttribute("role", "tab");
      editorTab.dataset.machine = machine.name;
      editorTab.dataset.view = "editor";
      editorTab.title = `Browse and edit ${machine.name}'s files`;
      editorTab.addEventListener("click", () => this.showEditor(machine.name));
      this.tabs.append(tab, editorTab);
      const section = pane(machine.name);
      const editorPane = element("section", "editor-pane");
      editorPane.setAttribute("role", "tabpanel");
      editorPane.dataset.machine = machine.name;
      editorPane.hidden = true;
      this.host.append(section, editorPane);
      this.panes.set(machine.name, section);
      this.editorPanes.set(machine.name, editorPane);
    }
    this.select(playground.machines[0].name);
  }

  /** Show `machine`'s terminal (view "terminal") or its editor ("editor"). */
  reveal(machine, view) {
    for (const tab of this.tabs.children) {
      const shown = tab.dataset.machine === machine && (tab.dataset.view || "terminal") === view;
      tab.setAttribute("aria-selected", String(shown));
    }
    for (const [name, section] of this.panes) section.hidden = name !== machine || view !== "terminal";
    for (const [name, section] of this.editorPanes) section.hidden = name !== machine || view !== "editor";
  }

  async showEditor(machine) {
    this.reveal(machine, "editor");
    if (!this.editors.has(machine)) {
      const { EditorTab } = await import("/static/editor.js");
      if (!this.editors.has(machine)) {
        this.editors.set(machine, new EditorTab(this.editorPanes.get(machine), this.playgroundId, machine));
      }
    }
    const editor = this.editors.get(machine);
    await editor.show();
    return editor;
  }

  /** Open a file in an editor tab: `target` from an open-file button or link. */
  async openFile(target) {
    const machine = target.machine && this.panes.has(target.machine) ? target.machine : this.current;
    const editor = await this.showEditor(machine);
    editor.setUser(target.user);
    await editor.open(target.path);
  }

  select(machine) {
    this.current = machine;
    this.reveal(machine, "terminal");
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
    this.editors.forEach((e) => e.dispose());
    this.editors.clear();
    this.panes.forEach((section) => section.remove());
    this.panes.clear();
    this.editorPanes.forEach((section) => section.remove());
    this.editorPanes.clear();
    this.tabs.replaceChildren();
    this.playgroundId = null;
    this.current = null;
  }
}
