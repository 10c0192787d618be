// The tag pattern language of `mgx inspect` (viz/pattern.py), for the search box and the
// breakpoints. tests/pattern_cases.json runs the same cases against both implementations.

"use strict";

const TAG_RE = /^([^\[@]*)(?:\[([^\]]*)\])?(?:@pos(\d+))?$/;

// A tag split as microgpt.scope.parse_tag splits it: {segments, index, pos}.
function parseTag(tag) {
  const m = TAG_RE.exec(tag);
  if (m === null) return null;
  return { segments: m[1].split("."), index: m[2] === undefined ? null : m[2], pos: m[3] === undefined ? null : Number(m[3]) };
}

class PatternError extends Error {}

function invalid(text, why) {
  return new PatternError(`pattern '${text}' is not valid: ${why}; write dotted segments, an optional [index] and @posN, ` +
    "e.g. attn.h0, layer*.mlp.pre, attn.h[01].q, layer0.attn.wq[3,5], attn.h0.k@pos0");
}

// fnmatch.fnmatchcase as a regular expression: * ? [seq] [!seq], everything else literal.
function globRegex(glob) {
  let out = "";
  let i = 0;
  while (i < glob.length) {
    const c = glob[i++];
    if (c === "*") out += "[\\s\\S]*";
    else if (c === "?") out += "[\\s\\S]";
    else if (c === "[") {
      let j = i;
      if (j < glob.length && glob[j] === "!") j++;
      if (j < glob.length && glob[j] === "]") j++;
      while (j < glob.length && glob[j] !== "]") j++;
      if (j >= glob.length) { out += "\\["; continue; }
      let body = glob.slice(i, j);
      i = j + 1;
      let negate = false;
      if (body[0] === "!") { negate = true; body = body.slice(1); }
      body = body.replace(/\\/g, "\\\\").replace(/\^/g, "\\^").replace(/\[/g, "\\[").replace(/\]/g, "\\]");
      out += negate ? `[^${body}]` : `[${body}]`;
    } else out += c.replace(/[.*+?^${}()|[\]\\\/]/g, "\\$&");
  }
  return new RegExp(`^(?:${out})$`);
}

const globCache = new Map();
function fnmatch(name, glob) {
  let re = globCache.get(glob);
  if (re === undefined) { re = globRegex(glob); globCache.set(glob, re); }
  return re.test(name);
}

function bracketGroups(text, path) {
  const groups = [];
  let depth = 0, start = 0;
  for (let i = 0; i < path.length; i++) {
    if (path[i] === "[") { if (depth === 0) start = i; depth++; }
    else if (path[i] === "]") {
      if (depth === 0) throw invalid(text, `the ']' at character ${i + 1} closes no '['`);
      depth--;
      if (depth === 0) groups.push([start, i + 1]);
    }
  }
  if (depth) throw invalid(text, `the '[' at character ${start + 1} is not closed`);
  return groups;
}

function splitSegments(path, groups) {
  const inside = new Set();
  for (const [s, e] of groups) for (let i = s; i < e; i++) inside.add(i);
  const out = [];
  let begin = 0;
  for (let i = 0; i < path.length; i++) {
    if (path[i] === "." && !inside.has(i)) { out.push(path.slice(begin, i)); begin = i + 1; }
  }
  out.push(path.slice(begin));
  return out;
}

// A pattern: {text, segments, index, posRange}; throws PatternError as Pattern.parse raises.
function parsePattern(raw) {
  const text = raw.trim();
  const at = text.indexOf("@");
  let path = at < 0 ? text : text.slice(0, at);
  let posRange = null;
  if (at >= 0) {
    const m = /^@pos(\*|\d+(?:-\d+)?)$/.exec(text.slice(at));
    if (m === null) throw invalid(text, "after '@' write posN, posN-M or pos*");
    if (m[1] !== "*") {
      const [lo, hi] = m[1].split("-");
      posRange = [Number(lo), Number(hi === undefined ? lo : hi)];
      if (posRange[0] > posRange[1]) throw invalid(text, `@pos${lo}-${hi} is an empty range (did you mean @pos${hi}-${lo}?)`);
    }
  }
  const groups = bracketGroups(text, path);
  let index = null;
  if (groups.length && groups[groups.length - 1][1] === path.length) {
    const start = groups.pop()[0];
    index = path.slice(start + 1, -1).replace(/ /g, "");
    path = path.slice(0, start);
    if (!index) throw invalid(text, "the [index] is empty: write [3,5], [3,*] or [*]");
  }
  let segments = splitSegments(path, groups);
  if (path && segments.some((s) => !s)) throw invalid(text, "a segment is empty (two dots together, or a dot at either end)");
  if (path === "" || path === "*") segments = [];
  return { text, segments, index, posRange };
}

function patternMatches(pat, parts) {
  if (parts === null) return !pat.segments.length && pat.index === null && pat.posRange === null;
  if (pat.posRange !== null && (parts.pos === null || parts.pos < pat.posRange[0] || parts.pos > pat.posRange[1])) return false;
  if (pat.index !== null && (parts.index === null || !fnmatch(parts.index, pat.index))) return false;
  const k = pat.segments.length;
  if (!k) return true;
  const path = parts.segments;
  const first = pat.index !== null ? path.length - k : 0;
  for (let s = first; s <= path.length - k; s++) {
    if (s < 0) continue;
    let ok = true;
    for (let j = 0; j < k && ok; j++) ok = fnmatch(path[s + j], pat.segments[j]);
    if (ok) return true;
  }
  return false;
}

// Does the tag (a string, or null for an untagged node) match the pattern text?
function tagMatches(patternText, tag) {
  return patternMatches(parsePattern(patternText), tag === null ? null : parseTag(tag));
}
