// Small SVG charts built with DOM calls (no library, no markup strings): lines and grouped bars.
const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function frame(width, height, pad) {
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img" });
  root.append(svg("line", { x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, class: "axis" }));
  root.append(svg("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b, class: "axis" }));
  return root;
}

// series: [{name, x: [...], y: [...]}] with x and y in [0, 1].
export function lineChart(series, { width = 420, height = 260, xLabel = "", yLabel = "", diagonal = false } = {}) {
  const pad = { l: 44, r: 12, t: 10, b: 36 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const root = frame(width, height, pad);
  const px = (x) => pad.l + x * w;
  const py = (y) => pad.t + (1 - y) * h;
  for (const t of [0, 0.5, 1]) {
    root.append(svg("text", { x: px(t), y: height - pad.b + 14, class: "tick", "text-anchor": "middle" }, t));
    root.append(svg("text", { x: pad.l - 6, y: py(t) + 4, class: "tick", "text-anchor": "end" }, t));
  }
  if (diagonal) root.append(svg("line", { x1: px(0), y1: py(0), x2: px(1), y2: py(1), class: "diagonal" }));
  series.forEach((s, i) => {
    const points = s.x.map((x, j) => `${px(x).toFixed(1)},${py(s.y[j]).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2 }));
    // Legend bottom right: curves that start at (0, 0) and end at (1, 1) leave that corner empty.
    const ly = height - pad.b - 8 - (series.length - i) * 16;
    root.append(svg("rect", { x: width - pad.r - 150, y: ly, width: 10, height: 10, fill: COLORS[i % COLORS.length] }));
    root.append(svg("text", { x: width - pad.r - 136, y: ly + 9, class: "legend" }, s.name));
  });
  root.append(svg("text", { x: pad.l + w / 2, y: height - 4, class: "label", "text-anchor": "middle" }, xLabel));
  root.append(svg("text", { x: 12, y: pad.t + h / 2, class: "label", "text-anchor": "middle", transform: `rotate(-90 12 ${pad.t + h / 2})` }, yLabel));
  return root;
}

// groups: category labels; series: [{name, values: [...]}] (any sign); one bar per series in each group.
export function barChart(groups, series, { width = 420, height = 220, yLabel = "" } = {}) {
  const pad = { l: 56, r: 12, t: 26, b: 30 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const all = series.flatMap((s) => s.values);
  const hi = Math.max(0, ...all);
  const lo = Math.min(0, ...all);
  const span = hi - lo || 1;
  const root = frame(width, height, pad);
  const py = (v) => pad.t + ((hi - v) / span) * h;
  root.append(svg("line", { x1: pad.l, y1: py(0), x2: width - pad.r, y2: py(0), class: "axis" }));
  for (const v of [lo, hi]) root.append(svg("text", { x: pad.l - 6, y: py(v) + 4, class: "tick", "text-anchor": "end" }, Number(v.toPrecision(2))));
  const gw = w / groups.length;
  const bw = (gw * 0.7) / series.length;
  groups.forEach((g, gi) => {
    series.forEach((s, si) => {
      const v = s.values[gi];
      const x = pad.l + gi * gw + gw * 0.15 + si * bw;
      root.append(svg("rect", { x, y: Math.min(py(v), py(0)), width: bw - 1, height: Math.abs(py(v) - py(0)), fill: COLORS[si % COLORS.length] }));
    });
    root.append(svg("text", { x: pad.l + gi * gw + gw / 2, y: height - pad.b + 14, class: "tick", "text-anchor": "middle" }, g));
  });
  series.forEach((s, i) => {
    root.append(svg("rect", { x: pad.l + 4 + i * 150, y: 6, width: 10, height: 10, fill: COLORS[i % COLORS.length] }));
    root.append(svg("text", { x: pad.l + 18 + i * 150, y: 15, class: "legend" }, s.name));
  });
  root.append(svg("text", { x: 12, y: pad.t + h / 2, class: "label", "text-anchor": "middle", transform: `rotate(-90 12 ${pad.t + h / 2})` }, yLabel));
  return root;
}
