// The search box: the nodes a tag pattern selects, counted and marked in every view, with
// next / previous moving the selection between them.

"use strict";

const SEARCH = { text: "", matches: [], at: -1 };

function runSearch(text) {
  SEARCH.text = text.trim();
  SEARCH.at = -1;
  SEARCH.matches = [];
  const count = document.getElementById("match-count");
  if (SEARCH.text) {
    try {
      SEARCH.matches = selectNodes(VIEW.g, SEARCH.text);
      count.textContent = `${SEARCH.matches.length.toLocaleString("en")} match${SEARCH.matches.length === 1 ? "" : "es"}`;
    } catch (err) {
      count.textContent = "invalid pattern";
      message(err.message);
    }
  } else count.textContent = "";
  markMatches();
}

// Mark the drawn items holding a match.
function markMatches() {
  if (!VIEW.drawn) return;
  const marked = new Set();
  for (const i of SEARCH.matches) {
    const k = VIEW.drawn.itemOf(i);
    if (k >= 0) marked.add(k);
  }
  VIEW.drawn.nodes.forEach((d, k) => d.gn.classList.toggle("match", marked.has(k)));
}

function nextMatch(delta) {
  if (!SEARCH.matches.length) {
    runSearch(document.getElementById("search").value);
    if (!SEARCH.matches.length) return;
  }
  const n = SEARCH.matches.length;
  SEARCH.at = SEARCH.at < 0 ? (delta > 0 ? 0 : n - 1) : (SEARCH.at + delta + n) % n;
  const i = SEARCH.matches[SEARCH.at];
  document.getElementById("match-count").textContent = `${SEARCH.at + 1} of ${n.toLocaleString("en")}`;
  showNodeInView(i);
}
