// A small hand-written SVG line chart of a batch's calls over time, from the console's samples.

import { clock, h, num, svg } from "./dom.js";

const SERIES = [
  { key: "finished", name: "Finished", cls: "line-finished" },
  { key: "waiting", name: "Queued", cls: "line-waiting" },
  { key: "inFlight", name: "In flight", cls: "line-inflight" },
];
const W = 720;
const H = 220;
const PAD = { left: 56, right: 16, top: 12, bottom: 28 };

export function legend() {
  return h("ul", { class: "legend", "aria-hidden": "true" },
    SERIES.map((s) => h("li", {}, h("span", { class: `swatch ${s.cls}` }), s.name)));
}

export function chart(samples, titleId) {
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": titleId,
  });
  const title = svg("title", { id: titleId });
  root.append(title);
  if (samples.length < 2) {
    title.textContent = "Calls over time: collecting samples";
    root.append(svg("text", { x: W / 2, y: H / 2, class: "chart-empty", "text-anchor": "middle" },
      "Collecting samples…"));
    return root;
  }
  const t0 = samples[0].t;
  const t1 = Math.max(samples[samples.length - 1].t, t0 + 10000);
  let top = 1;
  for (const s of samples) for (const { key } of SERIES) top = Math.max(top, s[key] || 0);
  top = niceCeil(top);
  const x = (t) => PAD.left + (t - t0) / (t1 - t0) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - v / top * (H - PAD.top - PAD.bottom);

  const grid = svg("g", { class: "grid" });
  for (const v of [0, top / 2, top]) {
    grid.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    grid.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, num(v)));
  }
  grid.append(svg("text", { x: PAD.left, y: H - 8, "text-anchor": "start" }, clock(t0)));
  grid.append(svg("text", { x: W - PAD.right, y: H - 8, "text-anchor": "end" }, clock(t1)));
  root.append(grid);

  for (const { key, cls } of SERIES) {
    const d = samples.map((s, i) => `${i ? "L" : "M"}${x(s.t).toFixed(1)},${y(s[key] || 0).toFixed(1)}`).join("");
    root.append(svg("path", { d, class: `line ${cls}` }));
  }
  const first = samples[0];
  const last = samples[samples.length - 1];
  title.textContent = `Calls over time, ${clock(t0)} to ${clock(last.t)}: finished ${num(first.finished)} to ` +
    `${num(last.finished)}, queued ${num(first.waiting)} to ${num(last.waiting)}, in flight now ${num(last.inFlight)}`;
  return root;
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
