// The analytics dashboard: one source of truth, GET /api/admin/analytics, drawn as headline
// figures (each against the previous period), two uPlot charts and the report's tables.
// uPlot comes from npm (node_modules/uplot, served at /static/vendor/uplot).

const SHARES = new Set(["free_play_share", "paid_usage_share", "paid_accounts_share"]);
const COLOURS = ["#4ade80", "#60a5fa", "#f59e0b", "#f472b6", "#a78bfa", "#2dd4bf"];
const DAY_MS = 86400000;

const $ = (selector, root = document) => root.querySelector(selector);
const state = { report: null, charts: [] };
window.labyardAnalytics = state;

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function daysBack(days) {
  const today = new Date();
  const to = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate()));
  return { from: isoDay(new Date(to - (days - 1) * DAY_MS)), to: isoDay(to) };
}

const integer = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });

function money(amounts, signed = false, separator = " · ") {
  const entries = Object.entries(amounts);
  if (!entries.length) return "0";
  return entries
    .map(([currency, minor]) => {
      const text = (minor / 100).toLocaleString("en", {
        minimumFractionDigits: 2, maximumFractionDigits: 2, signDisplay: signed ? "always" : "auto",
      });
      return `${text} ${currency}`;
    })
    .join(separator);
}

export function format(key, value) {
  if (value !== null && typeof value === "object") return money(value);
  if (SHARES.has(key)) return `${(value * 100).toFixed(1)} %`;
  return Number.isInteger(value) ? integer.format(value) : decimal.format(value);
}

function change(key, delta, previous) {
  if (delta !== null && typeof delta === "object") {
    const moved = Object.fromEntries(Object.entries(delta).filter(([, v]) => v !== 0));
    return `${Object.keys(moved).length ? money(moved, true) : "no change"} vs ${money(previous)}`;
  }
  const arrow = delta > 0 ? "▲" : delta < 0 ? "▼" : "=";
  const sign = delta > 0 ? "+" : "";
  const amount = SHARES.has(key)
    ? `${sign}${(delta * 100).toFixed(1)} pts`
    : `${sign}${format(key, delta)}`;
  return `${arrow} ${amount} vs ${format(key, previous)}`;
}

function showFigures(report) {
  for (const box of document.querySelectorAll("[data-figure]")) {
    const key = box.dataset.figure;
    const value = $(".value", box);
    const figure = report[key];
    const isMoney = figure !== null && typeof figure === "object";
    value.textContent = isMoney ? money(figure, false, "\n") : format(key, figure);
    value.classList.toggle("money", isMoney);
    value.dataset.value = JSON.stringify(report[key]);
    $(".change", box).textContent = change(key, report.change[key], report.previous[key]);
  }
  $("#figures").removeAttribute("aria-busy");
}

function cell(table, column, row) {
  const value = row[column];
  if (table === "country_tiers" && column === "revenue") return money(value);
  if (table === "country_tiers" && column === "tier") return value ?? "untiered";
  if (column === "amount") return money({ [row.currency]: value }).replace(` ${row.currency}`, "");
  return typeof value === "number" ? format(column, value) : String(value);
}

function showTables(report, query) {
  for (const section of document.querySelectorAll("[data-table]")) {
    const table = section.dataset.table;
    const columns = [...section.querySelectorAll("th")].map((th) => th.dataset.column);
    const body = $("tbody", section);
    body.replaceChildren();
    for (const row of report[table]) {
      const tr = document.createElement("tr");
      for (const column of columns) {
        const td = document.createElement("td");
        td.textContent = cell(table, column, row);
        if (typeof row[column] === "number") td.className = "num";
        tr.append(td);
      }
      body.append(tr);
    }
    if (!report[table].length) {
      const tr = document.createElement("tr");
      tr.innerHTML = `<td class="muted" colspan="${columns.length}">Nothing in this period.</td>`;
      body.append(tr);
    }
    $("a.csv", section).href = `/api/admin/analytics/${table}.csv?${query}`;
  }
}

function chartWidth(element) {
  return Math.max(200, element.clientWidth);
}

function axes(label) {
  const grid = { stroke: "#2a2f3a", width: 1 };
  return [
    { stroke: "#9ca3af", grid, ticks: grid },
    { stroke: "#9ca3af", grid, ticks: grid, label, size: 56 },
  ];
}

function usageChart(report) {
  const element = $("#chart-usage");
  const series = report.series;
  const x = series.start.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
  const hours = series.machine_minutes.map((minutes) => Math.round(minutes / 6) / 10);
  const days = series.bucket_days;
  $("#usage-note").textContent =
    `Launches and machine-hours${days > 1 ? ` per ${days} days` : " per day"}, ` +
    "by the day a session started (UTC).";
  const [axisX, axisLaunches] = axes("launches");
  const axisHours = { ...axes("machine-hours")[1], side: 1, scale: "hours", grid: { show: false } };
  return new window.uPlot(
    {
      width: chartWidth(element),
      height: 240,
      tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true }, hours: { auto: true } },
      axes: [axisX, axisLaunches, axisHours],
      series: [
        {},
        { label: "launches", stroke: COLOURS[0], fill: "rgba(74, 222, 128, .12)", width: 2 },
        { label: "machine-hours", stroke: COLOURS[1], scale: "hours", width: 2 },
      ],
    },
    [x, series.launches, hours],
    element,
  );
}

function revenueChart(report) {
  // One bar per month and currency, in major units: amounts in different currencies are
  // never added up, so each has a bar of its own (categories, not a time axis).
  const element = $("#chart-revenue");
  const rows = report.revenue_by_month;
  const labels = rows.map((row) => `${row.month} ${row.currency}`);
  const x = rows.length ? rows.map((_, i) => i) : [0];
  const amounts = rows.length ? rows.map((row) => row.amount / 100) : [null];
  const bars = window.uPlot.paths.bars({ size: [0.6, 80] });
  const [axisX, axisY] = axes("amount");
  return new window.uPlot(
    {
      width: chartWidth(element),
      height: 220,
      scales: {
        x: { time: false, range: () => [-0.5, Math.max(0, x.length - 1) + 0.5] },
        y: { range: (u, min, max) => [0, Math.max(1, max || 0) * 1.1] },
      },
      axes: [
        { ...axisX, splits: () => x, values: (u, splits) => splits.map((i) => labels[i] ?? "") },
        axisY,
      ],
      series: [
        { label: "month", value: (u, i) => (i == null ? "" : labels[i] ?? "") },
        {
          label: "revenue",
          stroke: COLOURS[1],
          fill: COLOURS[1] + "99",
          paths: bars,
          points: { show: false },
        },
      ],
    },
    [x, amounts],
    element,
  );
}

function drawCharts(report) {
  for (const chart of state.charts) chart.destroy();
  state.charts = [usageChart(report), revenueChart(report)];
}

async function load(period) {
  const query = new URLSearchParams({ from: period.from, to: period.to }).toString();
  $("#from").value = period.from;
  $("#to").value = period.to;
  const error = $("#error");
  const response = await fetch(`/api/admin/analytics?${query}`, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    error.textContent = body?.error?.message || `the server answered ${response.status}`;
    error.hidden = false;
    return;
  }
  error.hidden = true;
  state.report = body;
  showFigures(body);
  drawCharts(body);
  showTables(body, query);
  document.body.dataset.analytics = "ready";
}

function go(period) {
  const url = new URL(location.href);
  url.search = new URLSearchParams({ from: period.from, to: period.to }).toString();
  history.pushState(null, "", url);
  load(period);
}

function start() {
  const params = new URLSearchParams(location.search);
  const initial = params.get("from") && params.get("to")
    ? { from: params.get("from"), to: params.get("to") }
    : daysBack(30);
  $("#period").addEventListener("submit", (event) => {
    event.preventDefault();
    go({ from: $("#from").value, to: $("#to").value });
  });
  for (const button of document.querySelectorAll("[data-days]")) {
    button.addEventListener("click", () => go(daysBack(Number(button.dataset.days))));
  }
  window.addEventListener("popstate", () => {
    const back = new URLSearchParams(location.search);
    if (back.get("from") && back.get("to")) load({ from: back.get("from"), to: back.get("to") });
  });
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      for (const chart of state.charts) {
        chart.setSize({ width: chartWidth(chart.root.parentElement), height: chart.height });
      }
    }, 100);
  });
  load(initial);
}

start();
