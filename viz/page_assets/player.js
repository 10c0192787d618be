// The backprop player: backward's steps in the order viz/step.py's Stepper takes them, each
// `child.grad += local ∂ × node.grad` done here with the local derivatives Python wrote.
// Every step saves the grads it overwrites, so a step back restores them exactly, and after
// the last step every grad equals backward()'s to the bit.

"use strict";

const PLAYER = { k: 0, before: null, lastOfGroup: null, playing: false, timer: null, patternSets: new Map() };

function resetGrads() {
  const g = VIEW.g;
  const grads = new Float64Array(g.n);
  for (const [i, x] of Object.entries(g.raw.start_grads)) grads[Number(i)] = num(x);
  if (g.n) grads[g.n - 1] = 1;
  VIEW.grads = grads;
  PLAYER.k = 0;
  PLAYER.before = new Float64Array(g.children.length);
  // The last step of each tensor group (groups interleave: other nodes come between).
  const last = new Int32Array(g.raw.tensor_groups.length).fill(-1);
  for (let k = 0; k < g.order.length; k++) last[g.raw.tensor_group[g.order[k]]] = k;
  PLAYER.lastOfGroup = last;
}

// One step: every edge of the next node, in input order. Returns the node, or -1 at the end.
function stepOnce() {
  const g = VIEW.g;
  if (PLAYER.k >= g.order.length) return -1;
  const node = g.order[PLAYER.k];
  const grads = VIEW.grads, before = PLAYER.before, children = g.children, local = g.local;
  const nodeGrad = grads[node];
  for (let e = g.starts[node]; e < g.starts[node + 1]; e++) {
    const c = children[e];
    before[e] = grads[c];
    grads[c] = before[e] + local[e] * nodeGrad;
  }
  PLAYER.k++;
  return node;
}

function stepBackOnce() {
  const g = VIEW.g;
  if (PLAYER.k === 0) return false;
  PLAYER.k--;
  const node = g.order[PLAYER.k];
  for (let e = g.starts[node + 1] - 1; e >= g.starts[node]; e--) VIEW.grads[g.children[e]] = PLAYER.before[e];
  return true;
}

function currentNode() {
  return PLAYER.k ? VIEW.g.order[PLAYER.k - 1] : -1;
}

function gotoStep(k) {
  k = Math.max(0, Math.min(k, VIEW.g.order.length));
  while (PLAYER.k > k) stepBackOnce();
  while (PLAYER.k < k) stepOnce();
}

// -- breakpoints (viz.step.Breakpoint) ---------------------------------------------------------
function parseBreakpoint(text) {
  text = text.trim();
  if (!text) throw new Error("empty breakpoint: give a tag pattern, op:NAME, nonfinite, origin or grad>X");
  const lower = text.toLowerCase();
  if (lower === "nonfinite" || lower === "origin") {
    if (lower === "origin" && VIEW.g.raw.origin === null) throw new Error("this graph's backward pass has no origin of a non-finite grad");
    return { kind: lower, text: lower };
  }
  let m = /^op\s*:([\s\S]*)$/i.exec(text);
  if (m) {
    const op = m[1].trim();
    if (!op) throw new Error("breakpoint op: needs an op name, e.g. op:exp");
    return { kind: "op", text: op };
  }
  m = /^grad\s*>([\s\S]*)$/i.exec(text);
  if (m) {
    const raw = m[1].trim();
    const threshold = Number(raw);
    if (raw === "" || Number.isNaN(threshold)) throw new Error(`breakpoint threshold '${raw}' is not a number: write e.g. grad>0.5`);
    if (!(Number.isFinite(threshold) && threshold >= 0)) throw new Error(`breakpoint threshold '${raw}' must be a finite number >= 0`);
    return { kind: "grad", threshold, text };
  }
  const hits = selectNodes(VIEW.g, text);
  if (!hits.length) throw new Error(`pattern '${text}' matches no node in this graph`);
  return { kind: "pattern", text, hits: new Set(hits) };
}

function breakpointTexts() {
  return document.getElementById("breakpoints").value.split(",").map((t) => t.trim()).filter((t) => t);
}

function readBreakpoints() {
  return breakpointTexts().map(parseBreakpoint);
}

// Breakpoints set from the picture (the panel's toggle, shift+click): the tag pattern of a
// node (its tag) or of a group (its key) goes into the breakpoints box, in the stepper's own
// language, listed there with the typed ones; setting it again takes it out.
function breakpointPattern(item) {
  if (item.t === "n" || item.t === "on") return VIEW.g.tagOf(item.i);
  return VIEW.g.groups[item.g].key || null;
}

function toggleBreakpoint(pattern) {
  const list = breakpointTexts();
  const at = list.indexOf(pattern);
  if (at >= 0) list.splice(at, 1);
  else list.push(pattern);
  document.getElementById("breakpoints").value = list.join(", ");
  markBreakpoints();
  return at < 0;
}

// A red dot on each drawn item holding a node a pattern breakpoint stops at.
function markBreakpoints() {
  const d = VIEW.drawn;
  if (!d) return;
  const marked = new Set();
  for (const text of breakpointTexts()) {
    let bp;
    try { bp = parseBreakpoint(text); } catch (err) { continue; } // a typed one being edited
    if (bp.kind !== "pattern") continue;
    for (const i of bp.hits) if (d.itemOf(i) >= 0) marked.add(d.itemOf(i));
  }
  d.nodes.forEach((x, k) => {
    const dot = x.gn.querySelector("circle.bp");
    if (marked.has(k) && !dot) x.box.insertAdjacentHTML("afterend", '<circle class="bp" cx="0" cy="0" r="5"><title>breakpoint</title></circle>');
    else if (!marked.has(k) && dot) dot.remove();
  });
}

const above = (x, t) => Number.isNaN(x) || Math.abs(x) > t;

function hits(bp, node) {
  const g = VIEW.g, grads = VIEW.grads;
  const s = g.starts[node], e = g.starts[node + 1];
  if (bp.kind === "pattern") return bp.hits.has(node);
  if (bp.kind === "op") return g.opOf(node).name === bp.text;
  if (bp.kind === "origin") return node === g.raw.origin;
  if (bp.kind === "nonfinite") {
    if (!Number.isFinite(g.data[node]) || !Number.isFinite(grads[node])) return true;
    for (let k = s; k < e; k++) if (!Number.isFinite(grads[g.children[k]])) return true;
    return false;
  }
  if (above(grads[node], bp.threshold)) return true;
  for (let k = s; k < e; k++) if (above(grads[g.children[k]], bp.threshold)) return true;
  return false;
}

// Step at least once; stop after the first step that hits a breakpoint. True on a hit.
function continueToBreakpoint(bps) {
  for (;;) {
    const node = stepOnce();
    if (node < 0) return false;
    if (bps.some((bp) => hits(bp, node))) return true;
  }
}

// Finish the current tensor group (or, at its last node, the next one's), as the stepper's `o`.
function stepOverGroup() {
  const g = VIEW.g;
  if (PLAYER.k >= g.order.length) return;
  let group = g.raw.tensor_group[g.order[PLAYER.k]];
  const cur = currentNode();
  if (cur >= 0 && PLAYER.lastOfGroup[g.raw.tensor_group[cur]] >= PLAYER.k) group = g.raw.tensor_group[cur];
  const last = PLAYER.lastOfGroup[group];
  while (PLAYER.k <= last) stepOnce();
}

// The step (0-based) showing node i: its own, or for a leaf the first that updates it.
function stepForNode(i) {
  const g = VIEW.g;
  if (g.stepOf[i] >= 0) return g.stepOf[i];
  let best = -1;
  for (let k = g.consumerStarts[i]; k < g.consumerStarts[i + 1]; k++) best = Math.max(best, g.parentOfEdge[g.consumerEdges[k]]);
  return best >= 0 ? g.stepOf[best] : -1;
}

// Jump to a node id, or to the next step whose node matches a pattern (wrapping round).
function jumpTo(target) {
  const g = VIEW.g;
  target = target.trim();
  if (!target) throw new Error("nothing to jump to: give a node id or a tag pattern, e.g. attn.h0 or logits[3]@pos0");
  let k;
  if (g.idIndex.has(target)) {
    k = stepForNode(g.idIndex.get(target));
    if (k < 0) throw new Error(`node '${target}' takes no part in backward (nothing uses it)`);
  } else {
    const found = selectNodes(g, target);
    if (!found.length) throw new Error(`pattern '${target}' matches no node in this graph`);
    const steps = [...new Set(found.map(stepForNode).filter((s) => s >= 0))].sort((a, b) => a - b);
    if (!steps.length) throw new Error(`pattern '${target}' matches only nodes that take no part in backward`);
    k = steps.find((s) => s >= PLAYER.k);
    if (k === undefined) k = steps[0];
  }
  gotoStep(k + 1);
}

// -- play ------------------------------------------------------------------------------------
function setPlaying(on) {
  PLAYER.playing = on;
  document.getElementById("play").textContent = on ? "pause" : "play";
  if (PLAYER.timer !== null) { clearInterval(PLAYER.timer); PLAYER.timer = null; }
  if (!on) return;
  const rate = Number(document.getElementById("speed").value);
  let owed = 0, last = performance.now();
  PLAYER.timer = setInterval(() => {
    const now = performance.now();
    owed += ((now - last) / 1000) * rate;
    last = now;
    let n = Math.floor(owed);
    owed -= n;
    while (n-- > 0) {
      if (stepOnce() < 0) { setPlaying(false); break; }
    }
    afterSteps();
  }, 1000 / 60);
}

// -- what the page shows about the player ----------------------------------------------------
function updateLines(node) {
  const g = VIEW.g, grads = VIEW.grads;
  const s = g.starts[node], e = g.starts[node + 1];
  const lines = [];
  for (let k = s; k < e && k < s + 12; k++) {
    const c = g.children[k];
    lines.push(`${g.ids[c]}.grad += ${fmtg(g.local[k], 6)} × ${fmtg(grads[node], 6)} : ${fmtg(PLAYER.before[k], 6)} → ${fmtg(grads[c], 6)}`);
  }
  if (e - s > 12) lines.push(`… and ${e - s - 12} more edges`);
  return lines;
}

function showProgress() {
  const g = VIEW.g;
  const node = currentNode();
  const where = node >= 0 ? `, ${g.ids[node]} (${g.opOf(node).label})` : "";
  const state = PLAYER.k >= g.order.length ? " (backward finished)" : "";
  document.getElementById("progress").innerHTML = `<b>backward</b> <span id="step-count">${PLAYER.k}</span> of ${g.order.length} steps${esc(where)}${state}`;
  const updates = document.getElementById("updates");
  if (node < 0) {
    updates.innerHTML = '<div class="line">grads start at 0, the root\'s at 1: press n to step</div>';
    return;
  }
  updates.innerHTML = `<div class="line">child.grad += local ∂ × node.grad (node.grad = ${esc(fmtg(VIEW.grads[node], 6))})</div>` +
    updateLines(node).map((l) => `<div class="line">${esc(l)}</div>`).join("");
}
