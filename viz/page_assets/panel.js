// The side panel: the selected node as `mgx inspect --depth 1 --why` shows it (its inputs
// with their local ∂ and contribution, its provenance), from the numbers viz/page.py wrote;
// a group's summaries; the legend.

"use strict";

function esc(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function nodeLink(i) {
  return `<a data-node="${i}">${esc(VIEW.g.ids[i])}</a>`;
}

function row(cells) {
  return `<tr>${cells.map(([c, cls]) => `<td class="${cls || ""}">${c}</td>`).join("")}</tr>`;
}

function showNode(i) {
  const g = VIEW.g;
  const op = g.opOf(i);
  const tag = g.tagOf(i);
  const parts = [`<h3 class="mono" id="panel-id">${esc(g.ids[i])}</h3>`, "<table>"];
  parts.push(row([["tag"], [esc(tag === null ? "(untagged)" : tag)]]));
  parts.push(row([["op"], [`<span id="panel-op">${esc(op.label)}</span>`]]));
  parts.push(row([["rule"], [esc(op.rule)]]));
  parts.push(row([["data"], [`<span id="panel-data">${fmtg(g.data[i], 6)}</span>`]]));
  parts.push(row([["grad now"], [`<span id="panel-grad">${fmtg(VIEW.grads[i], 6)}</span>`]]));
  parts.push(row([["grad (backward)"], [fmtg(g.finalGrad[i], 6)]]));
  parts.push("</table>");
  parts.push(breakpointToggle(tag, "an untagged node has no tag pattern: break at it by op (op:NAME)"));
  if (g.compare) {
    // As mgx diff graph: this node on side B, and the differences B - A.
    const c = g.compare;
    if (c.hasB[i]) {
      parts.push(`<h3>side B: ${esc(c.label)}</h3><table id="panel-compare">`);
      parts.push(row([["data B"], [fmtg(c.bData[i], 6), "num"]]));
      parts.push(row([["Δdata (B − A)"], [`<span id="panel-ddata">${fmtg(c.dData[i], 6)}</span>`, "num"]]));
      parts.push(row([["grad B"], [fmtg(c.bGrad[i], 6), "num"]]));
      parts.push(row([["Δgrad (B − A)"], [fmtg(c.dGrad[i], 6), "num"]]));
      parts.push("</table>");
    } else {
      parts.push(`<div id="panel-compare">only in A: side B has no node ${esc(g.ids[i])}</div>`);
    }
  }
  const adam = g.raw.adam[String(i)];
  if (adam) {
    // As mgx inspect --adam: the checkpoint's moments, bias-corrected, and the last step's update.
    parts.push(`<h3>Adam, after the checkpoint's last step</h3><table id="panel-adam">`);
    for (const [name, key] of [["m", "m"], ["v", "v"], ["m̂", "m_hat"], ["v̂", "v_hat"], ["last update", "update"]]) {
      parts.push(row([[name], [fmtg(num(adam[key]), 6), "num"]]));
    }
    parts.push("</table>");
  }
  const s = g.starts[i], e = g.starts[i + 1];
  if (e > s) {
    parts.push(`<h3>inputs (${e - s}): local ∂ × upstream = contribution</h3><table id="panel-inputs">`);
    for (let k = s; k < e && k < s + 200; k++) {
      parts.push(row([[nodeLink(g.children[k])], [fmtg(g.local[k]), "num"], ["×"], [fmtg(g.finalGrad[i]), "num"], ["="], [fmtg(g.contribution[k]), "num"]]));
    }
    parts.push("</table>");
    if (e - s > 200) parts.push(`<div>… and ${e - s - 200} more</div>`);
  }
  const cs = g.consumerStarts[i], ce = g.consumerStarts[i + 1];
  if (ce > cs) {
    const edges = Array.from(g.consumerEdges.slice(cs, ce));
    edges.sort((a, b) => magnitude(g.contribution[b]) - magnitude(g.contribution[a]) || a - b);
    parts.push(`<h3>why: grad = Σ over ${ce - cs} consumer${ce - cs === 1 ? "" : "s"} of local ∂ × their grad</h3><table id="panel-why">`);
    for (const k of edges.slice(0, 200)) {
      const p = g.parentOfEdge[k];
      parts.push(row([[nodeLink(p)], [fmtg(g.local[k]), "num"], ["×"], [fmtg(g.finalGrad[p]), "num"], ["="], [fmtg(g.contribution[k]), "num"]]));
    }
    parts.push("</table>");
    const prov = g.raw.provenance[String(i)];
    if (prov) {
      parts.push(`<div>sum ${fmtg(num(prov.sum), 6)}</div>`);
      parts.push("<h3>by position</h3><table>");
      for (const [p, v] of prov.by_pos) parts.push(row([[p === null ? "(none)" : `pos ${p}`], [fmtg(num(v)), "num"]]));
      parts.push("</table><h3>by head</h3><table>");
      for (const [h, v] of prov.by_head) parts.push(row([[h === null ? "(no head)" : esc(h)], [fmtg(num(v)), "num"]]));
      parts.push("</table>");
    }
  } else if (i === g.n - 1) {
    parts.push("<div>the root: its grad is 1 by definition</div>");
  }
  document.getElementById("panel").innerHTML = parts.join("");
}

// The toggle that sets (or removes) a breakpoint at a tag pattern, saying what it selects.
function breakpointToggle(pattern, otherwise) {
  if (pattern === null) return otherwise ? `<div class="bp-toggle">${esc(otherwise)}</div>` : "";
  let n;
  try { n = selectNodes(VIEW.g, pattern).length; } catch (err) { return ""; } // not a pattern
  const on = breakpointTexts().includes(pattern);
  return `<label class="bp-toggle"><input type="checkbox" id="panel-break" data-pattern="${esc(pattern).replace(/"/g, "&quot;")}"${on ? " checked" : ""}> ` +
    `breakpoint at <span class="mono">${esc(pattern)}</span> (${n.toLocaleString("en")} node${n === 1 ? "" : "s"}; shift+click)</label>`;
}

function magnitude(x) {
  return Number.isNaN(x) ? Infinity : Math.abs(x);
}

function showGroup(v) {
  const g = VIEW.g;
  if (v === 0) {
    document.getElementById("panel").innerHTML = `<h3>the whole graph</h3><div>${g.n.toLocaleString("en")} nodes, ${g.children.length.toLocaleString("en")} edges, ${g.order.length.toLocaleString("en")} backward steps</div>`;
    return;
  }
  const group = g.groups[v];
  const values = group.summarised.map((i) => VIEW.grads[i]);
  const parts = [`<h3 class="mono" id="panel-id">${esc(group.key)}</h3><table>`];
  parts.push(row([["kind"], [esc(group.kind)]]));
  parts.push(row([["nodes"], [group.size.toLocaleString("en")]]));
  parts.push(row([["shape · op"], [`${esc(group.shape)} · ${esc(group.op)}`]]));
  if (group.data !== undefined) {
    parts.push(row([["data"], [esc(group.data)]]));
    parts.push(row([["grad (backward)"], [esc(group.grad)]]));
  }
  parts.push(row([["grad now"], [`<span id="panel-grad">${esc(summaryText(values))}</span>`]]));
  parts.push("</table><div>summaries over the group's outputs; open it (Enter, click) for its members</div>");
  parts.push(breakpointToggle(group.key, ""));
  document.getElementById("panel").innerHTML = parts.join("");
}

function showLegend() {
  const st = VIEW.style;
  const fams = new Set(VIEW.g.raw.ops.map((o) => o.family));
  const parts = ["<h3>legend</h3>"];
  const mode = VIEW.fill;
  if (mode === "ddata" || mode === "dgrad") {
    const c = VIEW.g.raw.compare;
    const scale = mode === "ddata" ? c.data_scale : c.grad_scale;
    const stops = [];
    for (let t = -1; t <= 1.0001; t += 0.25) stops.push(divergingFill(Math.sign(t) * 10 ** (scale[0] + Math.abs(t) * (scale[1] - scale[0])), scale) || "#fff");
    parts.push(`<div>fill: ${mode === "ddata" ? "data" : "grad"} of B − A, against ${esc(c.label)} (the largest |difference| of a group's outputs)</div>`);
    parts.push(`<div class="legend-row">−${fmtg(10 ** scale[1], 2)}<span class="ramp" style="background:linear-gradient(to right,${stops.join(",")})"></span>+${fmtg(10 ** scale[1], 2)}</div>`);
    parts.push(`<div>white: the same on both sides</div>`);
    parts.push(`<div class="legend-row"><span class="swatch" style="background:${st.only_a}"></span>only in A (${c.only_a.toLocaleString("en")} nodes); ${c.only_b.length.toLocaleString("en")} only in B</div>`);
  } else if (mode === "op") {
    for (const [fam, colour] of Object.entries(st.family_colour)) {
      if (fams.has(fam)) parts.push(`<div class="legend-row"><span class="swatch" style="background:${colour}"></span>${esc(st.family_label[fam])}</div>`);
    }
  } else {
    const scale = mode === "grad" ? VIEW.g.raw.grad_scale : VIEW.g.raw.data_scale;
    const stops = [];
    for (let t = -1; t <= 1.0001; t += 0.25) stops.push(divergingFill(Math.sign(t) * 10 ** (scale[0] + Math.abs(t) * (scale[1] - scale[0])), scale) || "#fff");
    parts.push(`<div>fill: ${mode} (the largest |${mode}| of a group's outputs); corner mark: ${mode === "grad" ? "data" : "grad"}</div>`);
    parts.push(`<div class="legend-row">−${fmtg(10 ** scale[1], 2)}<span class="ramp" style="background:linear-gradient(to right,${stops.join(",")})"></span>+${fmtg(10 ** scale[1], 2)}</div>`);
    parts.push(`<div>log magnitude from ${fmtg(10 ** scale[0], 2)}; white is 0</div>`);
  }
  parts.push(`<div class="legend-row"><span class="swatch" style="background:${st.nonfinite}"></span>non-finite data or grad (also marked !)</div>`);
  for (const [block, colour] of Object.entries(st.block_colour)) {
    parts.push(`<div class="legend-row"><span class="swatch" style="border:2px solid ${colour}"></span>block: ${esc(block)}</div>`);
  }
  document.getElementById("legend").innerHTML = parts.join("");
}
