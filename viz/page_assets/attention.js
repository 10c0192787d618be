// Each head's attention weights as a heatmap (rows: query positions, columns: the key
// positions they attend to, labelled with the input characters); a cell selects its node.
// The weights and their nodes come from viz/attention.py.

"use strict";

function showAttention() {
  const g = VIEW.g;
  const heads = g.raw.attention;
  const box = document.getElementById("attention");
  if (!heads.length) { box.innerHTML = ""; return; }
  const label = (p) => esc(g.raw.labels[p] !== undefined ? g.raw.labels[p] : `pos${p}`);
  const parts = ["<h3>attention weights</h3>"];
  for (const head of heads) {
    const width = 1 + Math.max(...head.rows.map(([, cells]) => Math.max(...cells.map(([k]) => k))));
    parts.push(`<div class="head"><div class="mono">${esc(head.head)}</div><table class="heat"><tr><td></td>`);
    for (let k = 0; k < width; k++) parts.push(`<td class="col">${label(k)}</td>`);
    parts.push("</tr>");
    for (const [pos, cells] of head.rows) {
      parts.push(`<tr><td class="row">${label(pos)}</td>`);
      const byKey = new Map(cells.map(([k, i]) => [k, i]));
      for (let k = 0; k < width; k++) {
        const i = byKey.get(k);
        if (i === undefined) { parts.push("<td></td>"); continue; }
        const w = g.data[i];
        const shade = Number.isFinite(w) ? Math.round(255 - 200 * Math.max(0, Math.min(1, w))) : null;
        const fill = shade === null ? VIEW.style.nonfinite : `rgb(${shade},${shade},255)`;
        parts.push(`<td class="cell" data-node="${i}" title="${esc(g.ids[i])} = ${fmtg(w, 6)}" style="background:${fill}">${Number.isFinite(w) ? w.toFixed(2).replace(/^0/, "") : fmtg(w)}</td>`);
      }
      parts.push("</tr>");
    }
    parts.push("</table></div>");
  }
  box.innerHTML = parts.join("");
}

function setupAttention() {
  document.getElementById("attention").addEventListener("click", (ev) => {
    const cell = ev.target.closest("td.cell");
    if (!cell) return;
    document.querySelectorAll("#attention td.cell.on").forEach((c) => c.classList.remove("on"));
    cell.classList.add("on");
    showNodeInView(Number(cell.getAttribute("data-node")));
  });
}
