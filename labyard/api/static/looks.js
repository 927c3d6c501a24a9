// Looking over a learner's shoulder (protocol: labyard/api/looks.py). On the learner's
// side: a banner in the terminal pane while anyone watches, with the button that lets the
// watcher type (and takes the keyboard back). The watcher's page is static/watch.js.
import { api } from "/static/app.js";

function stylesheet() {
  if (document.querySelector('link[href="/static/looks.css"]')) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/static/looks.css";
  document.head.append(link);
}

function grantPath(look) {
  return `/api/classes/${encodeURIComponent(look.class_id)}/looks/${look.id}/grant`;
}

function line(look) {
  const row = document.createElement("p");
  row.className = "look";
  row.dataset.look = look.id;
  const text = document.createElement("span");
  const where = look.tab === "main" ? look.machine : `${look.machine} (${look.tab})`;
  text.textContent = look.typing
    ? `${look.watcher} is watching ${where} and may type.`
    : `${look.watcher} is watching ${where} (read-only).`;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "button small ghost look-grant";
  button.textContent = look.typing ? "Take the keyboard back" : "Let the instructor type";
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api(look.typing ? "DELETE" : "POST", grantPath(look));
    } catch (error) {
      text.textContent = error.message;
      button.disabled = false;
    }
  });
  row.append(text, button);
  return row;
}

/** Show who is watching this pane's terminal; an empty list removes the banner. */
export function showLooks(pane, looks) {
  let banner = pane.querySelector(".look-banner");
  if (!looks.length) {
    banner?.remove();
    return;
  }
  stylesheet();
  if (!banner) {
    banner = document.createElement("div");
    banner.className = "look-banner";
    banner.setAttribute("role", "status");
    pane.append(banner);
  }
  banner.replaceChildren(...looks.map(line));
}
