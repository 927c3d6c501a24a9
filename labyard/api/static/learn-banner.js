// The banner above a learning page's text: solved (with a small celebration), failed (with
// Restart), ended (with Start again). Text goes in with textContent only.
const banner = document.getElementById("banner");

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Show `kind` (solved|failed|ended) with a title, detail and buttons [{label, run, style}]. */
export function showBanner(kind, title, detail, actions = []) {
  banner.className = `banner banner-${kind}`;
  banner.querySelector(".banner-title").textContent = title;
  banner.querySelector(".banner-detail").textContent = detail;
  const buttons = actions.map(({ label, run, style }) => {
    const button = element("button", `button small ${style || ""}`.trim(), label);
    button.addEventListener("click", () => run(button));
    return button;
  });
  banner.querySelector(".banner-actions").replaceChildren(...buttons);
  banner.hidden = false;
  if (kind === "solved") celebrate();
}

export function hideBanner() {
  banner.hidden = true;
}

const COLORS = ["#4ade80", "#22d3ee", "#fbbf24", "#c084fc", "#f87171", "#60a5fa"];

/** A short burst of confetti from the banner (skipped for reduced motion). */
function celebrate() {
  if (window.matchMedia("(prefers-reduced-motion: reduce)").matches) return;
  const burst = element("div", "confetti");
  burst.setAttribute("aria-hidden", "true");
  for (let i = 0; i < 28; i += 1) {
    const piece = element("span");
    piece.style.setProperty("--x", `${Math.round((Math.random() - 0.5) * 520)}px`);
    piece.style.setProperty("--y", `${Math.round(-60 - Math.random() * 140)}px`);
    piece.style.setProperty("--r", `${Math.round(Math.random() * 720 - 360)}deg`);
    piece.style.setProperty("--delay", `${Math.round(Math.random() * 120)}ms`);
    piece.style.background = COLORS[i % COLORS.length];
    burst.append(piece);
  }
  banner.append(burst);
  setTimeout(() => burst.remove(), 1800);
}
