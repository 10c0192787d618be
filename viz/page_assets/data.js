// The graph's data as viz/page.py wrote it, decoded once: numbers into Float64Arrays
// ("NaN", "Infinity" and "-Infinity" are strict JSON's stand-ins), edges parent by parent.

"use strict";

function num(x) {
  if (typeof x === "number") return x;
  if (x === "NaN") return NaN;
  if (x === "Infinity") return Infinity;
  if (x === "-Infinity") return -Infinity;
  throw new Error(`not a number: ${x}`);
}

function floats(list) {
  const out = new Float64Array(list.length);
  for (let i = 0; i < list.length; i++) out[i] = num(list[i]);
  return out;
}

function loadGraph() {
  const raw = JSON.parse(document.getElementById("graph-data").textContent);
  const n = raw.ids.length;
  const g = {
    raw,
    n,
    ids: raw.ids,
    idIndex: new Map(raw.ids.map((id, i) => [id, i])),
    tagOf: (i) => (raw.node_tag[i] < 0 ? null : raw.tags[raw.node_tag[i]]),
    opOf: (i) => raw.ops[raw.node_op[i]],
    data: floats(raw.data),
    finalGrad: floats(raw.grad),
    starts: Int32Array.from(raw.starts),
    children: Int32Array.from(raw.children),
    local: floats(raw.local),
    contribution: floats(raw.contribution),
    order: Int32Array.from(raw.order),
    groups: raw.groups,
    viewOf: Int32Array.from(raw.view_of),
    views: raw.views,
  };
  // mgx diff graph -o diff.html: side B's numbers and B - A for each node (NaN where B has no
  // node of that id: hasB says which).
  if (raw.compare) {
    const c = raw.compare;
    const orNaN = (list) => floats(list.map((x) => (x === null ? "NaN" : x)));
    g.compare = { label: c.label, bData: orNaN(c.data), bGrad: orNaN(c.grad), dData: orNaN(c.delta_data), dGrad: orNaN(c.delta_grad), hasB: Uint8Array.from(c.data, (x) => (x === null ? 0 : 1)) };
  }
  // The edges leaving each node (its consumers), for the provenance panel.
  const outCount = new Int32Array(n + 1);
  for (let e = 0; e < g.children.length; e++) outCount[g.children[e] + 1]++;
  for (let i = 0; i < n; i++) outCount[i + 1] += outCount[i];
  const fill = outCount.slice(0, n);
  g.consumerStarts = outCount;
  g.consumerEdges = new Int32Array(g.children.length);
  g.parentOfEdge = new Int32Array(g.children.length);
  for (let p = 0; p < n; p++) {
    for (let e = g.starts[p]; e < g.starts[p + 1]; e++) {
      g.parentOfEdge[e] = p;
      g.consumerEdges[fill[g.children[e]]++] = e;
    }
  }
  // Tag parts, parsed once per distinct tag.
  const parts = raw.tags.map(parseTag);
  g.tagParts = parts;
  g.partsOf = (i) => (raw.node_tag[i] < 0 ? null : parts[raw.node_tag[i]]);
  // The nodes of each tag, for patterns: matched once per tag, as viz.pattern.select does per group.
  g.nodesOfTag = raw.tags.map(() => []);
  g.untagged = [];
  for (let i = 0; i < n; i++) (raw.node_tag[i] < 0 ? g.untagged : g.nodesOfTag[raw.node_tag[i]]).push(i);
  g.stepOf = new Int32Array(n).fill(-1);
  for (let k = 0; k < g.order.length; k++) g.stepOf[g.order[k]] = k;
  return g;
}

// The nodes a pattern selects (viz.pattern.select), in graph order; throws PatternError.
function selectNodes(g, text) {
  const pat = parsePattern(text);
  const out = [];
  g.raw.tags.forEach((_, t) => {
    if (patternMatches(pat, g.tagParts[t])) out.push(...g.nodesOfTag[t]);
  });
  if (patternMatches(pat, null)) out.push(...g.untagged);
  return out.sort((a, b) => a - b);
}

// x in scientific notation with p significant digits, rounded as Python rounds: to the
// nearest, and an exact tie to the even digit (JavaScript's toExponential rounds ties up).
function exponential(x, p) {
  const s = x.toExponential(p - 1);
  const full = Math.abs(x).toExponential(100); // exact: a tie needs no more than p + 1 digits
  const digits = full[0] + full.slice(2, full.indexOf("e"));
  if (digits[p] !== "5" || !/^0*$/.test(digits.slice(p + 1)) || Number(digits[p - 1]) % 2 === 1) return s;
  const kept = digits.slice(0, p);
  return `${x < 0 ? "-" : ""}${kept[0]}${p > 1 ? "." + kept.slice(1) : ""}${full.slice(full.indexOf("e"))}`;
}

// Numbers as Python's f"{x:.{p}g}" writes them (nan, inf, -inf included).
function fmtg(x, p = 4) {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const [mant, ex] = exponential(x, p).split("e");
  const exp = Number(ex);
  const strip = (t) => (t.includes(".") ? t.replace(/0+$/, "").replace(/\.$/, "") : t);
  if (exp < -4 || exp >= p) return `${strip(mant)}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  const sign = x < 0 ? "-" : "";
  const ds = mant.replace("-", "").replace(".", "");
  const fixed = exp >= 0 ? `${ds.slice(0, exp + 1)}.${ds.slice(exp + 1)}` : `0.${"0".repeat(-exp - 1)}${ds}`;
  return sign + strip(fixed);
}

// A summary as the page's labels write it (viz.page._summary_text): finite min … max, then
// the non-finite numbers counted.
function summaryText(values) {
  let lo = Infinity, hi = -Infinity, finite = 0, nan = 0, pos = 0, neg = 0;
  for (const x of values) {
    if (Number.isNaN(x)) nan++;
    else if (x === Infinity) pos++;
    else if (x === -Infinity) neg++;
    else { finite++; if (x < lo) lo = x; if (x > hi) hi = x; }
  }
  const flags = [];
  if (nan) flags.push([nan, "nan"]);
  if (pos) flags.push([pos, "inf"]);
  if (neg) flags.push([neg, "-inf"]);
  if (values.length === 1) return finite ? fmtg(values[0]) : flags[0][1];
  const parts = finite ? [`${fmtg(lo)} … ${fmtg(hi)}`] : [];
  return parts.concat(flags.map(([k, w]) => `${k} ${w}`)).join(" · ");
}

// The diverging fill: white at 0, red for positive, blue for negative, deeper with the log
// of the magnitude across `scale` (log10 from, to).
function divergingFill(x, scale) {
  if (!Number.isFinite(x)) return null;
  if (x === 0) return "#ffffff";
  const t = Math.max(0.06, Math.min(1, (Math.log10(Math.abs(x)) - scale[0]) / (scale[1] - scale[0])));
  const [r, g, b] = x > 0 ? [220, 38, 38] : [37, 99, 235];
  const mix = (c) => Math.round(255 + (c - 255) * t);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}
