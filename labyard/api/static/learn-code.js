// Copy and Run-in-terminal buttons for the code of a learning page. Rendered code carries
// `data-copy` (copy button) and `data-run` (run button; "interrupt" sends Ctrl+C first).

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Not a secure context (plain http on a LAN address): the old way still works.
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }
}

function button(label, title, className) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  node.textContent = label;
  node.title = title;
  return node;
}

function flash(node, text) {
  const before = node.dataset.label || node.textContent;
  node.dataset.label = before;
  node.textContent = text;
  clearTimeout(node.flashTimer);
  node.flashTimer = setTimeout(() => (node.textContent = before), 1400);
}

/** `run(text, interrupt)` returns false when no terminal is open to run it in. */
export function enhanceCode(root, run) {
  const doRun = (node, source, code) => {
    const ok = run(code.textContent, source.dataset.run === "interrupt");
    flash(node, ok ? "Sent ✓" : "Start first");
  };
  for (const pre of root.querySelectorAll("pre[data-copy]")) {
    const code = pre.querySelector("code") || pre;
    const bar = document.createElement("div");
    bar.className = "code-actions";
    const copy = button("Copy", "Copy to the clipboard", "code-button");
    copy.addEventListener("click", async () => flash(copy, (await copyText(code.textContent)) ? "Copied ✓" : "Copy failed"));
    bar.append(copy);
    if (pre.hasAttribute("data-run")) {
      const go = button("▶ Run", "Run in the terminal", "code-button run");
      go.addEventListener("click", () => doRun(go, pre, code));
      bar.append(go);
    }
    pre.classList.add("has-actions");
    pre.append(bar);
  }
  for (const code of root.querySelectorAll("code[data-copy]")) {
    const runs = code.hasAttribute("data-run");
    const action = button(runs ? "▶" : "⧉", runs ? "Run in the terminal" : "Copy", "code-inline-button");
    action.addEventListener("click", async () => {
      if (runs) doRun(action, code, code);
      else flash(action, (await copyText(code.textContent)) ? "✓" : "✗");
    });
    code.after(action);
  }
}
