"""Draw one attention head of the GPT, scalar by scalar, as an SVG.

Builds the graph of the token 'm' at position 2 of "emma" on a fresh model, keeps the
nodes whose tag matches ``attn.h0`` (queries, keys, scores, softmax weights, outputs of
head 0) plus one hop of neighbours drawn collapsed, writes the local derivative on each
edge, and lays it out with graphviz-pure (or the system dot). Run:

    python examples/draw_attention_head.py head0.svg
"""

import sys
from pathlib import Path

from microgpt.data import embedded_documents
from microgpt.files import write_atomic
from microgpt.graph import resolve_token, token_graph
from microgpt.train import start_run
from viz.dot import describe, to_dot
from viz.render import find_layout_program, layout

out = Path(sys.argv[1] if len(sys.argv) > 1 else "head0.svg")
run = start_run(embedded_documents().docs)  # seed 42, untrained
spec = resolve_token(run.tokenizer, run.model.config.block_size, word="emma", pos=2)
graph = token_graph(run.model, spec)  # forward over the context and the token, then backward

dot = to_dot(
    graph,
    level="scalar",
    focus="attn.h0",
    hops=1,
    edge_grads=True,
    title=describe(graph, run.tokenizer, "a fresh model (seed 42)") + " | head 0",
    rankdir="TB",
)
program = find_layout_program(None)
if program is None:
    out = out.with_suffix(".dot")
    write_atomic(out, dot.source)
else:
    write_atomic(out, layout(program, dot.source, out.suffix.lstrip(".") or "svg"))
print(f"wrote {out}")
