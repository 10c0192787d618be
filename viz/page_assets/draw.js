// Drawing one view: its clusters, edges and boxes, at the positions the layout program gave;
// then only the numbers and fills change (the layout never moves). Pan and zoom by a transform.

"use strict";

function blockKind(path) {
  const last = path.split("@")[0].split(".").pop();
  return last in VIEW.style.block_colour ? last : "other";
}

// The members an item's colour and grad line cover (trace nodes).
function itemValues(item) {
  if (item.t === "n" || item.t === "on") return [item.i];
  return VIEW.g.groups[item.g].summarised;
}

function itemLines(item) {
  const g = VIEW.g;
  if (item.t === "n") {
    const i = item.i;
    return [g.ids[i], g.opOf(i).label, `data ${fmtg(g.data[i])}`, `grad ${fmtg(VIEW.grads[i])}`];
  }
  const [into, outOf] = item.edges || [0, 0];
  const counted = (n, what) => (n ? `${n.toLocaleString("en")} ${what}` : "");
  const flow = [counted(into, `edge${into === 1 ? "" : "s"} in`), counted(outOf, `edge${outOf === 1 ? "" : "s"} out`)].filter((x) => x).join(", ");
  if (item.t === "on") return [g.ids[item.i], `(outside) ${flow}`];
  const group = g.groups[item.g];
  if (item.t === "o") return [group.key, `(${group.size.toLocaleString("en")} nodes, outside)`, flow];
  const values = group.summarised.map((i) => VIEW.grads[i]);
  const lines = [item.name, `${group.shape} · ${group.op}`];
  lines.push(`data ${group.data !== undefined ? group.data : summaryText(group.summarised.map((i) => g.data[i]))}`);
  lines.push(`grad ${summaryText(values)}`);
  return lines;
}

// The value that colours an item: the one of largest magnitude among its members (a nan or
// an infinity wins, and flags the item).
function itemValue(item, values) {
  let best = 0, bad = false;
  for (const i of itemValues(item)) {
    const x = values[i];
    if (!Number.isFinite(x)) { bad = true; best = x; break; }
    if (Math.abs(x) > Math.abs(best)) best = x;
  }
  return [best, bad];
}

// In a diff page, the difference B - A of largest magnitude among an item's members that B
// has too (null when it has none of them); a nan or an infinity wins.
function itemDelta(item, deltas) {
  const has = VIEW.g.compare.hasB;
  let best = 0, seen = false;
  for (const i of itemValues(item)) {
    if (!has[i]) continue;
    seen = true;
    const x = deltas[i];
    if (!Number.isFinite(x)) return x;
    if (Math.abs(x) > Math.abs(best)) best = x;
  }
  return seen ? best : null;
}

function itemFill(item) {
  const g = VIEW.g;
  if (item.t === "o" || item.t === "on") return "#ffffff";
  const mode = VIEW.fill;
  if (mode === "ddata" || mode === "dgrad") {
    const x = itemDelta(item, mode === "ddata" ? g.compare.dData : g.compare.dGrad);
    if (x === null) return VIEW.style.only_a;
    if (!Number.isFinite(x)) return VIEW.style.nonfinite;
    return divergingFill(x, mode === "ddata" ? g.raw.compare.data_scale : g.raw.compare.grad_scale);
  }
  if (mode === "op") {
    const fam = item.t === "n" ? g.opOf(item.i).family : g.groups[item.g].family;
    return VIEW.style.family_colour[fam] || "#f3f4f6";
  }
  const [x, bad] = itemValue(item, mode === "grad" ? VIEW.grads : g.data);
  if (bad || (mode === "data" && item.t === "g" && g.groups[item.g].nonfinite_data > 0)) return VIEW.style.nonfinite;
  return divergingFill(x, mode === "grad" ? g.raw.grad_scale : g.raw.data_scale);
}

function nonfiniteItem(item) {
  if (item.t === "o" || item.t === "on") return false;
  if (item.t === "g" && VIEW.g.groups[item.g].nonfinite_data > 0) return true;
  return itemValue(item, VIEW.grads)[1] || itemValue(item, VIEW.g.data)[1];
}

// A drawing by its key: a group's view ("12"), or the top's with a group open ("open:12").
function viewData(v) {
  return v.startsWith("open:") ? VIEW.g.raw.open_views[v.slice(5)] : VIEW.g.views[v];
}

// A view as viz/page.py writes it (rows, to keep a large page small) made into objects,
// once, when it is first drawn.
function expandView(view) {
  if (view.expanded) return view;
  view.items = view.items.map(([t, ref, x, y, w, h, extra]) => {
    const item = { t, x, y, w, h };
    if (t === "g" || t === "o") item.g = ref;
    else item.i = ref;
    if (t === "g") item.name = extra;
    else if (extra !== undefined) item.edges = extra;
    return item;
  });
  const paths = VIEW.g.raw.edge_paths[view.paths]; // shared by the views laid out alike
  view.edges = view.edges.map(([a, b, n], j) => ({ a, b, n, path: paths[j][0], arrow: paths[j][1] }));
  view.expanded = true;
  return view;
}

// The views drawn lately stay in the page, laid out, each in a layer of its own: the one on
// screen is #viewport, the others wait far off screen. Going back to one (the player following
// backward up and down the groups, Esc) moves it back and rewrites its numbers; taking a
// layer out of the page and putting it back would lay it out anew (several times slower),
// and hiding it by visibility or display restyles all of it. Each layer carries its own zoom
// (the camera is the shown layer's transform), and waits at the zoom it opens at: a change of
// zoom lays out every label under the transform again. The player draws the view it will
// enter next ahead of time, while it waits between steps (prepareView).
const drawnCache = new Map();
const CACHED_VIEWS = 32;
const CACHED_ITEMS = 8000; // a weight matrix's view has a thousand items
const offScreen = (drawn) => `translate(-1000000,-1000000) scale(${drawn.s})`;

// Draw the view of group `v` into the viewport (or, `hidden`, only prepare it off screen);
// returns the drawn view's state.
function drawView(v, hidden) {
  let drawn = drawnCache.get(v);
  if (drawn) {
    drawnCache.delete(v);
    drawnCache.set(v, drawn); // the most recent last
  } else {
    drawn = drawLayer(v);
    drawnCache.set(v, drawn);
    evictViews();
  }
  if (hidden) return drawn;
  const old = VIEW.drawn;
  if (old && old !== drawn) {
    old.layer.setAttribute("transform", offScreen(old));
    old.layer.removeAttribute("id");
    old.nodes.forEach((d) => d.gn.classList.remove("selected"));
  }
  drawn.layer.id = "viewport";
  VIEW.drawn = drawn;
  refreshAll();
  return drawn;
}

// Keep at most CACHED_VIEWS views and CACHED_ITEMS items drawn, dropping the least recent
// (never the one on screen).
function evictViews() {
  let items = 0;
  for (const d of drawnCache.values()) items += d.nodes.length;
  for (const [v, d] of drawnCache) {
    if (drawnCache.size <= CACHED_VIEWS && items <= CACHED_ITEMS) break;
    if (d === VIEW.drawn || drawnCache.size === 1) continue;
    d.layer.remove();
    drawnCache.delete(v);
    items -= d.nodes.length;
  }
}

// Draw view `v` off screen at the zoom it opens at, laid out (the browser's style and layout
// done now, not when it is shown), unless it is so drawn already.
function prepareView(v) {
  const cached = drawnCache.get(v);
  const s = openingScale(expandView(viewData(v)));
  if (cached && cached.s === s) return;
  const drawn = cached || drawView(v, true);
  drawn.s = s;
  drawn.layer.setAttribute("transform", offScreen(drawn));
  setTiny(drawn, s * 10 < TINY_PX);
  refreshAll(drawn);
  drawn.layer.getBoundingClientRect();
}

function drawLayer(v) {
  const view = expandView(viewData(v));
  const layer = document.createElementNS("http://www.w3.org/2000/svg", "g");
  const drawn = { view, group: v, nodes: [], edges: new Map(), itemOf: null, layer, s: openingScale(view) };
  layer.setAttribute("class", "layer");
  layer.setAttribute("transform", offScreen(drawn));
  // Labels too small to read are not laid out at all (a weight matrix has a thousand boxes).
  layer.classList.toggle("tiny", drawn.s * 10 < TINY_PX);
  // The markup is written as one string and parsed once: building a thousand boxes element
  // by element took four times as long.
  const out = [];
  for (const c of view.clusters) {
    const colour = VIEW.style.block_colour[c.name === "context" ? "context" : blockKind(c.name)];
    out.push(`<g class="cluster"><rect x="${c.x}" y="${c.y}" width="${c.w}" height="${c.h}" rx="6" stroke="${colour}"></rect>` +
      `<text x="${c.x + 6}" y="${c.y + 13}" fill="${colour}">${esc(c.name.split(".").pop())}</text></g>`);
  }
  for (const e of view.edges) {
    let p = e.path, arrow = e.arrow;
    if (p.length < 8) {
      if (!view.straight) continue; // not drawn (a grid's edges are counted on its neighbours)
      [p, arrow] = straightEdge(view.items[e.a], view.items[e.b]);
    }
    let d = `M${p[0]},${p[1]}`;
    for (let j = 2; j + 5 < p.length; j += 6) d += `C${p[j]},${p[j + 1]} ${p[j + 2]},${p[j + 3]} ${p[j + 4]},${p[j + 5]}`;
    let inner = `<path d="${d}"></path>`;
    if (arrow.length) {
      const [x0, y0] = [p[p.length - 2], p[p.length - 1]];
      const [x1, y1] = arrow;
      const dx = x1 - x0, dy = y1 - y0, len = Math.hypot(dx, dy) || 1;
      const nx = (-dy / len) * 3.5, ny = (dx / len) * 3.5;
      inner += `<polygon points="${x1},${y1} ${x0 + nx},${y0 + ny} ${x0 - nx},${y0 - ny}"></polygon>`;
    }
    if (e.n > 1) inner += `<title>${e.n} scalar edges</title>`;
    out.push(`<g class="edge" data-edge="${e.a}>${e.b}">${inner}</g>`);
  }
  // Labels too small to read are not drawn (a weight matrix has a thousand boxes, opened
  // whole): they are added when the view is first zoomed in far enough to read them.
  drawn.labelled = drawn.s * 10 >= TINY_PX;
  view.items.forEach((item, k) => {
    const cls = item.t === "g" ? "node group" : item.t === "n" ? "node scalar" : "node outside";
    let stroke = "";
    if (item.t === "g") {
      const fam = VIEW.g.groups[item.g].family;
      stroke = ` stroke="${VIEW.style.family_colour[fam] ? darker(VIEW.style.family_colour[fam]) : "#6b7280"}"`;
    }
    out.push(`<g class="${cls}" data-item="${k}" transform="translate(${item.x - item.w / 2},${item.y - item.h / 2})">` +
      `<rect class="box" width="${item.w}" height="${item.h}" rx="4"${stroke}></rect>` +
      `<rect class="mark" x="${item.w - 11}" y="3" width="8" height="8"></rect>` +
      `<text class="flag" x="${item.w - 22}" y="11"></text>${drawn.labelled ? labelMarkup(item) : ""}</g>`);
  });
  layer.innerHTML = out.join("");
  document.getElementById("camera").appendChild(layer);
  for (const ge of layer.querySelectorAll("g.edge")) drawn.edges.set(ge.getAttribute("data-edge"), ge);
  for (const gn of layer.querySelectorAll("g.node")) {
    const [box, mark, flag, ...texts] = gn.children;
    drawn.nodes.push({ item: view.items[drawn.nodes.length], gn, box, mark, flag, texts });
  }
  drawn.itemOf = itemLookup(view);
  return drawn;
}

// An edge to a neighbour placed beside a large view (viz.page._place_neighbours): a straight
// line from one box's edge to the other's, as a path of one cubic and the arrow's tip.
function straightEdge(a, b) {
  const down = a.y < b.y ? 1 : -1;
  const [x0, y0] = [a.x, a.y + (down * a.h) / 2];
  const [x1, y1] = [b.x, b.y - (down * b.h) / 2];
  const len = Math.hypot(x1 - x0, y1 - y0) || 1;
  const [ex, ey] = [x1 - ((x1 - x0) / len) * 7, y1 - ((y1 - y0) / len) * 7]; // the arrow's base
  const at = (t) => [x0 + (ex - x0) * t, y0 + (ey - y0) * t];
  return [[x0, y0, ...at(1 / 3), ...at(2 / 3), ex, ey], [x1, y1]];
}

function labelMarkup(item) {
  return itemLines(item).map((line, j) => `<text x="7" y="${16 + j * 13}"${j === 0 ? ' class="name"' : ""}>${esc(line)}</text>`).join("");
}

// Zoomed in or out: labels shown only where readable, drawn the first time they are.
function setTiny(drawn, tiny) {
  if (!tiny && !drawn.labelled) {
    for (const d of drawn.nodes) {
      d.gn.insertAdjacentHTML("beforeend", labelMarkup(d.item));
      d.texts = [...d.gn.querySelectorAll("text:not(.flag)")];
    }
    drawn.labelled = true;
  }
  drawn.layer.classList.toggle("tiny", tiny);
}

function darker(hex) {
  const n = parseInt(hex.slice(1), 16);
  const f = (c) => Math.round(c * 0.6);
  return `rgb(${f(n >> 16)},${f((n >> 8) & 255)},${f(n & 255)})`;
}

// The item of the drawn view that shows trace node i (-1: none), found by going up from the
// node's own view to the first group drawn here (a few steps: the groups nest four deep), not
// kept for every node (a whole name's atomic page has 60,000).
function itemLookup(view) {
  const g = VIEW.g;
  const byGroup = new Map(), byNode = new Map();
  view.items.forEach((item, k) => {
    if (item.t === "g" || item.t === "o") byGroup.set(item.g, k);
    else byNode.set(item.i, k);
  });
  return (i) => {
    const k = byNode.get(i);
    if (k !== undefined) return k;
    for (let v = g.viewOf[i]; v >= 0; v = g.groups[v].parent) {
      const at = byGroup.get(v);
      if (at !== undefined) return at;
      if (v === 0) break;
    }
    return -1;
  };
}

// Rewrite one drawn item's numbers and fill.
function refreshItem(k, drawn = VIEW.drawn) {
  const d = drawn.nodes[k];
  if (d.texts.length) {
    const lines = itemLines(d.item);
    d.texts.forEach((t, j) => { if (t.textContent !== lines[j]) t.textContent = lines[j]; });
  }
  d.box.setAttribute("fill", itemFill(d.item));
  const showMark = (VIEW.fill === "grad" || VIEW.fill === "data") && d.item.t !== "o" && d.item.t !== "on";
  if (showMark) {
    const other = VIEW.fill === "grad" ? VIEW.g.data : VIEW.grads;
    const [x, bad] = itemValue(d.item, other);
    d.mark.setAttribute("fill", bad ? VIEW.style.nonfinite : divergingFill(x, VIEW.fill === "grad" ? VIEW.g.raw.data_scale : VIEW.g.raw.grad_scale));
  }
  d.mark.style.display = showMark ? "" : "none";
  d.flag.textContent = nonfiniteItem(d.item) ? "!" : "";
}

function refreshAll(drawn = VIEW.drawn) {
  for (let k = 0; k < drawn.nodes.length; k++) refreshItem(k, drawn);
}

// -- pan and zoom --------------------------------------------------------------------------
const camera = { x: 0, y: 0, s: 1 };

const TINY_PX = 4; // labels below this size (10 px text times the zoom) are hidden
const READABLE = 0.6; // the smallest zoom a view opens at (unless it has MANY items)
const MANY = 300; // a view of more items opens whole, its labels hidden until zoomed in

function openingScale(view) {
  return view.items.length > MANY ? fitScale(view) : Math.max(fitScale(view), READABLE);
}
let canvasBox = null;

function canvasSize() {
  if (canvasBox === null) {
    canvasBox = document.getElementById("canvas").getBoundingClientRect();
    window.addEventListener("resize", () => { canvasBox = null; }, { once: true });
  }
  return canvasBox;
}

function applyCamera() {
  const drawn = VIEW.drawn;
  drawn.s = camera.s;
  drawn.layer.setAttribute("transform", `translate(${camera.x},${camera.y}) scale(${camera.s})`);
  setTiny(drawn, camera.s * 10 < TINY_PX);
}

function fitScale(view) {
  const box = canvasSize();
  return Math.min(1.5, (box.width - 20) / Math.max(view.w, 1), (box.height - 20) / Math.max(view.h, 1));
}

function fit() {
  const box = canvasSize();
  const view = VIEW.drawn.view;
  // Fit the whole view, unless its labels would then be too small to read: then show its top
  // middle at a readable size (zoom out with - or the wheel for the whole).
  const s = openingScale(view);
  camera.s = s;
  camera.x = (box.width - view.w * s) / 2;
  camera.y = Math.max(10, (box.height - view.h * s) / 2);
  applyCamera();
}

function zoomAt(factor, cx, cy) {
  const s = Math.max(0.02, Math.min(8, camera.s * factor));
  camera.x = cx - ((cx - camera.x) * s) / camera.s;
  camera.y = cy - ((cy - camera.y) * s) / camera.s;
  camera.s = s;
  applyCamera();
}

function pan(dx, dy) {
  camera.x += dx;
  camera.y += dy;
  applyCamera();
}

// Bring an item into sight without changing the zoom.
function reveal(k) {
  const item = VIEW.drawn.view.items[k];
  const box = canvasSize();
  const x = camera.x + item.x * camera.s, y = camera.y + item.y * camera.s;
  if (x < 20 || x > box.width - 20 || y < 20 || y > box.height - 20) {
    camera.x = box.width / 2 - item.x * camera.s;
    camera.y = box.height / 2 - item.y * camera.s;
    applyCamera();
  }
}

function setupPanZoom() {
  const canvas = document.getElementById("canvas");
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const r = canvas.getBoundingClientRect();
    if (ev.ctrlKey || !ev.shiftKey) zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
    else pan(-ev.deltaX, -ev.deltaY);
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("pointerdown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, moved: false };
  });
  window.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    drag.moved = true;
    canvas.classList.add("dragging");
    pan(dx, dy);
    drag.x = ev.clientX;
    drag.y = ev.clientY;
  });
  window.addEventListener("pointerup", () => {
    VIEW.dragged = drag !== null && drag.moved;
    drag = null;
    canvas.classList.remove("dragging");
  });
}
