// The page's state and its wiring: which view is open (the breadcrumb), what is selected,
// the toolbar and the keys. `window.mgx` lets the tests drive and read it.

"use strict";

const VIEW = { g: null, grads: null, fill: "grad", drawn: null, view: 0, opened: -1, enteredFrom: -1, selected: -1, selectedItem: -1, style: null };

function message(text) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.classList.add("show");
  clearTimeout(message.timer);
  message.timer = setTimeout(() => box.classList.remove("show"), 3500);
}

function hasView(v) {
  return Object.prototype.hasOwnProperty.call(VIEW.g.views, String(v));
}

function groupName(v) {
  return v === 0 ? "graph" : VIEW.g.groups[v].key;
}

// Open the view of group v (a group with members to show); or, with `opened`, the top's
// drawing with that group of it open in place (its members in a cluster, the other groups
// collapsed around it).
function openView(v, keepCamera, opened = -1) {
  VIEW.view = v;
  VIEW.opened = opened;
  drawView(opened >= 0 ? `open:${opened}` : String(v));
  const crumbs = [];
  for (let u = v; u >= 0; u = u === 0 ? -1 : VIEW.g.groups[u].parent) crumbs.unshift(u);
  let html = crumbs
    .map((u) => (u === v && opened < 0 ? `<b>${esc(groupName(u))}</b>` : `<a data-view="${u}">${esc(groupName(u))}</a>`))
    .join('<span class="sep">›</span>');
  if (opened >= 0) html += `<span class="sep">›</span><b>${esc(groupName(opened))}</b> <span class="note">(open in place; Esc closes it)</span>`;
  document.getElementById("crumbs").innerHTML = html;
  VIEW.selectedItem = -1;
  markMatches();
  markBreakpoints();
  markPlayer();
  if (keepCamera) applyCamera();
  else fit();
  if (VIEW.selected >= 0) selectNode(VIEW.selected, true);
}

function hasOpenView(g) {
  return Object.prototype.hasOwnProperty.call(VIEW.g.raw.open_views, String(g));
}

// Esc: close the group open in place; or go up a level (back into the top's drawing with the
// group open in place, where the view was entered from it).
function up() {
  const from = VIEW.view;
  if (from === 0) {
    const opened = VIEW.opened;
    if (opened < 0) return;
    openView(0);
    selectItem(VIEW.drawn.view.items.findIndex((it) => it.t === "g" && it.g === opened));
    return;
  }
  const parent = VIEW.g.groups[from].parent;
  if (parent === VIEW.enteredFrom) openView(0, false, parent);
  else openView(parent);
  const k = VIEW.drawn.view.items.findIndex((it) => it.t === "g" && it.g === from);
  if (k >= 0) selectItem(k);
}

function selectItem(k) {
  VIEW.drawn.nodes.forEach((d, j) => d.gn.classList.toggle("selected", j === k));
  VIEW.selectedItem = k;
  if (k < 0) return;
  const item = VIEW.drawn.view.items[k];
  if (item.t === "n" || item.t === "on") { VIEW.selected = item.i; showNode(item.i); }
  else showGroup(item.g);
  reveal(k);
}

// Select node i in the open view (the item that shows it), without moving views.
function selectNode(i, quiet) {
  VIEW.selected = i;
  const k = VIEW.drawn.itemOf(i);
  VIEW.drawn.nodes.forEach((d, j) => d.gn.classList.toggle("selected", j === k));
  VIEW.selectedItem = k;
  showNode(i);
  if (k >= 0 && !quiet) reveal(k);
}

// Open the view that holds node i as one of its own, and select it there.
function showNodeInView(i) {
  const v = VIEW.g.viewOf[i];
  if (v !== VIEW.view) openView(v);
  selectNode(i);
}

// Activate an item: a group opens, an outside group opens in its place, a scalar is selected.
function activate(k) {
  const item = VIEW.drawn.view.items[k];
  const inPlace = VIEW.opened;
  if (item.t === "g" && VIEW.view === 0 && hasOpenView(item.g)) { openView(0, false, item.g); showGroup(item.g); }
  else if (item.t === "g" && hasView(item.g)) {
    VIEW.enteredFrom = inPlace >= 0 && VIEW.g.groups[item.g].parent === inPlace ? inPlace : -1;
    openView(item.g);
    showGroup(item.g);
  }
  else if (item.t === "o") {
    if (hasView(item.g)) openView(item.g);
    else openView(VIEW.g.groups[item.g].parent);
  } else if (item.t === "on") showNodeInView(item.i);
  else selectItem(k);
}

// After any player move: the numbers, the highlight, the panel, the view following.
function markPlayer() {
  if (!VIEW.drawn) return;
  const node = currentNode();
  const d = VIEW.drawn;
  d.nodes.forEach((x) => x.gn.classList.remove("current", "updated"));
  d.edges.forEach((x) => x.classList.remove("hot"));
  if (node < 0) return;
  const g = VIEW.g;
  const at = d.itemOf(node);
  if (at >= 0) d.nodes[at].gn.classList.add("current");
  for (let e = g.starts[node]; e < g.starts[node + 1]; e++) {
    const c = d.itemOf(g.children[e]);
    if (c >= 0 && c !== at) {
      d.nodes[c].gn.classList.add("updated");
      const edge = d.edges.get(`${c}>${at}`);
      if (edge) edge.classList.add("hot");
    }
  }
}

function afterSteps(touched) {
  const node = currentNode();
  if (node >= 0 && document.getElementById("follow").checked && VIEW.g.viewOf[node] !== VIEW.view) {
    openView(VIEW.g.viewOf[node], false);
  } else if (touched === "all" || touched === undefined) refreshAll();
  else for (const k of touched) refreshItem(k);
  markPlayer();
  if (node >= 0 && VIEW.drawn.itemOf(node) >= 0) reveal(VIEW.drawn.itemOf(node));
  showProgress();
  refreshPanel();
  prepareNext();
}

// The view the player enters next when it follows backward (-1: none ahead).
function nextView() {
  const g = VIEW.g;
  const end = Math.min(g.order.length, PLAYER.k + 4096);
  for (let k = PLAYER.k; k < end; k++) {
    const v = g.viewOf[g.order[k]];
    if (v !== VIEW.view) return v;
  }
  return -1;
}

// While the player waits between steps, draw the view it will enter next, so that the step
// into it only puts it on screen.
let preparing = null;
function prepareNext() {
  if (preparing !== null || !document.getElementById("follow").checked) return;
  const run = () => {
    preparing = null;
    const v = nextView();
    if (v >= 0 && hasView(v)) prepareView(String(v));
  };
  preparing = window.requestIdleCallback ? window.requestIdleCallback(run, { timeout: 250 }) : setTimeout(run, 0);
}

function refreshPanel() {
  const grad = document.getElementById("panel-grad");
  if (!grad) return;
  if (VIEW.selectedItem >= 0 && VIEW.drawn.view.items[VIEW.selectedItem].t === "g") {
    const item = VIEW.drawn.view.items[VIEW.selectedItem];
    grad.textContent = summaryText(VIEW.g.groups[item.g].summarised.map((i) => VIEW.grads[i]));
  } else if (VIEW.selected >= 0) grad.textContent = fmtg(VIEW.grads[VIEW.selected], 6);
}

// The items one step touched: the node's and its children's.
function touchedItems(node) {
  const g = VIEW.g, d = VIEW.drawn, out = new Set();
  if (node < 0) return out;
  if (d.itemOf(node) >= 0) out.add(d.itemOf(node));
  for (let e = g.starts[node]; e < g.starts[node + 1]; e++) if (d.itemOf(g.children[e]) >= 0) out.add(d.itemOf(g.children[e]));
  return out;
}

const actions = {
  step() { const node = stepOnce(); if (node < 0) message("backward is finished"); afterSteps(touchedItems(node)); },
  back() { const node = currentNode(); if (!stepBackOnce()) message("at the start"); afterSteps(touchedItems(node)); },
  over() { stepOverGroup(); afterSteps(); },
  continue() {
    let bps;
    try { bps = readBreakpoints(); } catch (err) { message(err.message); return; }
    if (!bps.length) { message("no breakpoints: type some in the breakpoints box (e.g. attn.h0, op:exp, nonfinite, grad>0.5)"); return; }
    const hit = continueToBreakpoint(bps);
    message(hit ? `breakpoint at step ${PLAYER.k}: ${VIEW.g.ids[currentNode()]}` : "backward finished without a breakpoint");
    afterSteps();
  },
  play() { setPlaying(!PLAYER.playing); },
  jump() {
    try { jumpTo(document.getElementById("jump").value); } catch (err) { message(err.message); return; }
    afterSteps();
  },
};

function setupKeys() {
  document.addEventListener("keydown", (ev) => {
    const inField = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement;
    if (ev.key === "Escape") {
      document.getElementById("help").hidden = true;
      if (inField) { ev.target.blur(); return; }
      up();
      return;
    }
    if (inField) {
      if (ev.key === "Enter" && ev.target.id === "search") { runSearch(ev.target.value); nextMatch(ev.shiftKey ? -1 : 1); }
      else if (ev.key === "Enter" && ev.target.id === "jump") actions.jump();
      else if (ev.key === "Enter" && ev.target.id === "breakpoints") actions.continue();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const canvas = document.getElementById("canvas").getBoundingClientRect();
    if (ev.shiftKey && ev.key.startsWith("Arrow")) {
      const d = 60;
      pan(ev.key === "ArrowLeft" ? d : ev.key === "ArrowRight" ? -d : 0, ev.key === "ArrowUp" ? d : ev.key === "ArrowDown" ? -d : 0);
    } else if (ev.key === "n" || ev.key === " " || ev.key === "ArrowRight") actions.step();
    else if (ev.key === "b" || ev.key === "ArrowLeft") actions.back();
    else if (ev.key === "o") actions.over();
    else if (ev.key === "c") actions.continue();
    else if (ev.key === "p") actions.play();
    else if (ev.key === "j") document.getElementById("jump").focus();
    else if (ev.key === "/") document.getElementById("search").focus();
    else if (ev.key === "?") document.getElementById("help").hidden = !document.getElementById("help").hidden;
    else if (ev.key === "f" || ev.key === "0") fit();
    else if (ev.key === "+" || ev.key === "=") zoomAt(1.25, canvas.width / 2, canvas.height / 2);
    else if (ev.key === "-") zoomAt(0.8, canvas.width / 2, canvas.height / 2);
    else if (ev.key === "Tab") {
      const n = VIEW.drawn.nodes.length;
      selectItem(((VIEW.selectedItem < 0 ? -1 : VIEW.selectedItem) + (ev.shiftKey ? n - 1 : 1)) % n);
    } else if (ev.key === "Enter" && VIEW.selectedItem >= 0) activate(VIEW.selectedItem);
    else return;
    ev.preventDefault();
  });
}

function setupClicks() {
  document.getElementById("camera").addEventListener("click", (ev) => {
    if (VIEW.dragged) return;
    const node = ev.target.closest(".node");
    if (!node) return;
    const k = Number(node.getAttribute("data-item"));
    if (ev.shiftKey) {  // shift+click: a breakpoint on it, or off
      const pattern = breakpointPattern(VIEW.drawn.view.items[k]);
      if (pattern === null) message("an untagged node has no tag pattern: break at it by op (op:NAME)");
      else message(`${toggleBreakpoint(pattern) ? "breakpoint set" : "breakpoint removed"}: ${pattern}`);
      selectItem(k);
      return;
    }
    selectItem(k);
    activate(k);
  });
  document.getElementById("crumbs").addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-view]");
    if (a) openView(Number(a.getAttribute("data-view")));
  });
  document.getElementById("panel").addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-node]");
    if (a) showNodeInView(Number(a.getAttribute("data-node")));
  });
  document.getElementById("panel").addEventListener("change", (ev) => {
    if (ev.target.id === "panel-break") toggleBreakpoint(ev.target.getAttribute("data-pattern"));
  });
  document.getElementById("breakpoints").addEventListener("input", () => markBreakpoints());
  const on = (id, f) => document.getElementById(id).addEventListener("click", f);
  on("step", actions.step);
  on("back", actions.back);
  on("over", actions.over);
  on("continue", actions.continue);
  on("play", actions.play);
  on("fit", fit);
  on("help-button", () => { document.getElementById("help").hidden = !document.getElementById("help").hidden; });
  on("next-match", () => nextMatch(1));
  on("prev-match", () => nextMatch(-1));
  document.getElementById("fill").addEventListener("change", (ev) => { VIEW.fill = ev.target.value; refreshAll(); showLegend(); });
  document.getElementById("speed").addEventListener("input", (ev) => {
    document.getElementById("speed-value").textContent = `${ev.target.value}/s`;
    if (PLAYER.playing) setPlaying(true);
  });
}

function start() {
  const t0 = performance.now();
  VIEW.g = loadGraph();
  VIEW.style = VIEW.g.raw.style;
  if (VIEW.g.compare) {  // a diff page opens coloured by the difference
    const select = document.getElementById("fill");
    select.insertAdjacentHTML("afterbegin", '<option value="ddata">Δdata</option><option value="dgrad">Δgrad</option>');
    select.value = VIEW.fill = "ddata";
  }
  document.getElementById("title").textContent = VIEW.g.raw.title;
  resetGrads();
  setupPanZoom();
  setupKeys();
  setupClicks();
  showLegend();
  setupAttention();
  showAttention();
  const raw = VIEW.g.raw;
  let first = 0;
  if (raw.focus_first !== null) first = VIEW.g.viewOf[raw.focus_first];
  else if (raw.level === "tensor") {
    const k = raw.groups.findIndex((gr, v) => gr.depth === 0 && gr.kind === "block" && hasView(v) && gr.key.includes(".attn@"));
    if (k > 0) first = k;
  }
  openView(first);
  if (raw.focus) {
    document.getElementById("search").value = raw.focus;
    runSearch(raw.focus);
  }
  showGroup(first);
  showProgress();
  prepareNext();
  window.mgx.ready = true;
  window.mgx.startMs = performance.now() - t0;
  window.mgx.readyAt = performance.now(); // since navigation started
}

window.mgx = {
  ready: false,
  view: () => VIEW.view,
  viewName: () => groupName(VIEW.view),
  opened: () => (VIEW.opened < 0 ? null : groupName(VIEW.opened)),
  items: () => VIEW.drawn.view.items.map((it) => (it.t === "n" || it.t === "on" ? VIEW.g.ids[it.i] : VIEW.g.groups[it.g].key)),
  grads: () => Array.from(VIEW.grads),
  ids: () => VIEW.g.ids,
  step: () => PLAYER.k,
  steps: () => VIEW.g.order.length,
  finish: () => { gotoStep(VIEW.g.order.length); afterSteps(); },
  matches: () => SEARCH.matches.map((i) => VIEW.g.ids[i]),
  select: (pattern) => selectNodes(VIEW.g, pattern).map((i) => VIEW.g.ids[i]),
  tagMatches,
  stepUI: () => actions.step(),
  reveal: (name) => reveal(window.mgx.items().indexOf(name)),
  viewGroups: () => Object.keys(VIEW.g.views).map(Number),
  openView: (v) => openView(v),
  openGroup: (key) => { const v = VIEW.g.groups.findIndex((gr) => gr.key === key); openView(v); },
  showNode: (id) => showNodeInView(VIEW.g.idIndex.get(id)),
  adam: (id) => VIEW.g.raw.adam[String(VIEW.g.idIndex.get(id))] || null,
  fill: () => VIEW.fill,
  breakpointItems: () => VIEW.drawn.nodes.filter((d) => d.gn.querySelector("circle.bp")).map((d) => window.mgx.items()[VIEW.drawn.nodes.indexOf(d)]),
  itemFills: () => VIEW.drawn.nodes.map((d) => d.box.getAttribute("fill")),
};

start();
