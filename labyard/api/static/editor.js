// The editor tab of one machine: browse its files and edit them with CodeMirror 6, over the
// files API (SFTP in the machine, as root or as the `user` given): open, save, create, rename,
// delete. The machine's permissions apply; refusals show as a message in the tab.
import { EditorView, basicSetup } from "codemirror";
import { api } from "/static/app.js";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, action, title) {
  const node = element("button", "button ghost small", label);
  node.type = "button";
  node.dataset.editorAction = action;
  if (title) node.title = title;
  return node;
}

function parent(path) {
  const cut = path.replace(/\/+$/, "").lastIndexOf("/");
  return cut <= 0 ? "/" : path.slice(0, cut);
}

function join(dir, name) {
  return name.startsWith("/") ? name : `${dir.replace(/\/+$/, "")}/${name}`;
}

export class EditorTab {
  constructor(pane, playgroundId, machine) {
    this.pane = pane;
    this.base = `/api/playgrounds/${playgroundId}/machines/${encodeURIComponent(machine)}/files`;
    this.machine = machine;
    this.user = null; // the machine user to act as; null: root, as in the terminal
    this.dir = null; // the directory listed
    this.path = null; // the file open
    this.saved = ""; // its content as last opened or saved
    this.build();
  }

  build() {
    const root = element("div", "editor");
    const side = element("aside", "editor-side");
    this.dirInput = element("input", "editor-dir");
    this.dirInput.setAttribute("aria-label", "Directory");
    this.dirInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.browse(this.dirInput.value);
    });
    this.list = element("ul", "editor-list");
    const sideActions = element("div", "editor-side-actions");
    sideActions.append(
      button("New file", "new-file", "Create an empty file in this directory"),
      button("New folder", "new-folder", "Create a directory here"),
    );
    side.append(this.dirInput, sideActions, this.list);

    const main = element("section", "editor-main");
    const bar = element("div", "editor-bar");
    this.title = element("span", "editor-path", "No file open");
    this.dirty = element("span", "editor-dirty", "●");
    this.dirty.hidden = true;
    this.dirty.title = "Changed since it was saved";
    this.status = element("span", "editor-status");
    this.status.setAttribute("role", "status");
    this.saveButton = button("Save", "save", "Save (Ctrl+S)");
    const actions = element("span", "editor-actions");
    actions.append(this.status, this.saveButton, button("Rename", "rename"), button("Delete", "delete"));
    bar.append(this.title, this.dirty, actions);
    this.host = element("div", "editor-host");
    main.append(bar, this.host);
    root.append(side, main);
    this.pane.append(root);

    this.view = new EditorView({
      doc: "",
      parent: this.host,
      extensions: [
        basicSetup,
        EditorView.updateListener.of((update) => update.docChanged && this.markDirty()),
        EditorView.domEventHandlers({
          keydown: (event) => {
            if ((event.ctrlKey || event.metaKey) && event.key === "s") {
              event.preventDefault();
              this.save();
              return true;
            }
            return false;
          },
        }),
      ],
    });
    root.addEventListener("click", (event) => {
      const action = event.target.closest("[data-editor-action]")?.dataset.editorAction;
      if (action) this.act(action);
    });
    this.setEnabled(false);
  }

  query(extra = {}) {
    const params = new URLSearchParams(extra);
    if (this.user) params.set("user", this.user);
    const text = params.toString();
    return text ? `?${text}` : "";
  }

  say(text, error = false) {
    this.status.textContent = text;
    this.status.classList.toggle("error", error);
  }

  setEnabled(enabled) {
    for (const action of ["save", "rename", "delete"]) {
      this.pane.querySelector(`[data-editor-action=${action}]`).disabled = !enabled;
    }
  }

  markDirty() {
    this.dirty.hidden = this.view.state.doc.toString() === this.saved;
  }

  /** Show the tab's first directory (the user's home) unless it shows one already. */
  async show() {
    if (this.dir === null) await this.browse(null);
    this.view.focus();
  }

  setUser(user) {
    if ((user || null) === this.user) return;
    this.user = user || null;
    this.dir = null;
  }

  async browse(dir) {
    try {
      const listing = await api("GET", `${this.base}${this.query(dir ? { path: dir } : {})}`);
      this.dir = listing.path;
      this.dirInput.value = listing.path;
      this.renderList(listing.entries);
    } catch (error) {
      this.say(error.message, true);
    }
  }

  renderList(entries) {
    this.list.replaceChildren();
    if (this.dir !== "/") entries = [{ name: "..", kind: "directory" }, ...entries];
    for (const entry of entries) {
      const item = element("li", `editor-entry kind-${entry.kind}`);
      const link = element("button", "editor-entry-name", entry.kind === "directory" ? `${entry.name}/` : entry.name);
      link.type = "button";
      link.dataset.name = entry.name;
      link.title = entry.target ? `${entry.name} → ${entry.target}` : entry.name;
      const path = entry.name === ".." ? parent(this.dir) : join(this.dir, entry.name);
      link.addEventListener("click", () => {
        if (entry.kind === "directory") this.browse(path);
        else if (entry.kind === "symlink") this.openOrBrowse(path);
        else this.open(path);
      });
      item.append(link);
      this.list.append(item);
    }
  }

  async openOrBrowse(path) {
    try {
      await this.open(path, { quiet: true });
    } catch {
      await this.browse(path);
    }
  }

  /** Open `path` (absolute, or relative to the listed directory) in the editor. */
  async open(path, { quiet = false } = {}) {
    if (!this.confirmDiscard()) return;
    const full = join(this.dir || "/", path);
    try {
      const file = await api("GET", `${this.base}/content${this.query({ path: full })}`);
      this.load(file.path, file.content);
      this.say(`Opened ${file.path}`);
      if (this.dir === null || parent(file.path) !== this.dir) await this.browse(parent(file.path));
    } catch (error) {
      if (quiet) throw error;
      this.say(error.message, true);
    }
  }

  load(path, content) {
    this.path = path;
    this.saved = content;
    this.title.textContent = path;
    this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: content } });
    this.markDirty();
    this.setEnabled(true);
    this.view.focus();
  }

  confirmDiscard() {
    const changed = this.path && this.view.state.doc.toString() !== this.saved;
    return !changed || window.confirm(`Discard your changes to ${this.path}?`);
  }

  async save() {
    if (!this.path) return;
    const content = this.view.state.doc.toString();
    this.say("Saving…");
    try {
      await api("PUT", `${this.base}/content${this.query()}`, { path: this.path, content });
      this.saved = content;
      this.markDirty();
      this.say(`Saved ${this.path}`);
    } catch (error) {
      this.say(error.message, true);
    }
  }

  async act(action) {
    try {
      if (action === "save") await this.save();
      else if (action === "new-file" || action === "new-folder") await this.create(action === "new-folder");
      else if (action === "rename") await this.rename();
      else if (action === "delete") await this.remove();
    } catch (error) {
      this.say(error.message, true);
    }
  }

  async create(directory) {
    const name = window.prompt(directory ? "New folder name" : "New file name");
    if (!name) return;
    const path = join(this.dir, name);
    await api("POST", `${this.base}${this.query()}`, { path, kind: directory ? "directory" : "file" });
    await this.browse(this.dir);
    if (directory) this.say(`Created ${path}/`);
    else await this.open(path);
  }

  async rename() {
    const to = window.prompt(`Rename ${this.path} to`, this.path);
    if (!to || to === this.path) return;
    const moved = await api("POST", `${this.base}/rename${this.query()}`, { path: this.path, to: join(this.dir, to) });
    this.path = moved.path;
    this.title.textContent = moved.path;
    this.say(`Renamed to ${moved.path}`);
    await this.browse(parent(moved.path));
  }

  async remove() {
    if (!window.confirm(`Delete ${this.path}?`)) return;
    await api("DELETE", `${this.base}${this.query({ path: this.path })}`);
    this.say(`Deleted ${this.path}`);
    this.path = null;
    this.saved = "";
    this.title.textContent = "No file open";
    this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: "" } });
    this.setEnabled(false);
    await this.browse(this.dir);
  }

  dispose() {
    this.view.destroy();
    this.pane.replaceChildren();
  }
}
