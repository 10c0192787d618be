"""The graph of one token, read top to bottom.

Builds the computation graph of a fresh model predicting the letter after "em" in "emma"
(the token "m" at position 2), backpropagates it, and prints what the graph holds: how many
scalars, which ops, where they sit in the model, and a few of the numbers.

    python examples/one_token_graph.py
"""

from collections import Counter

from microgpt.data import find_dataset
from microgpt.engine import topological_order
from microgpt.graph import resolve_token, token_graph
from microgpt.scope import parse_tag
from microgpt.train import start_run

# 1. A fresh model, set up as the reference run is: seed 42, shuffle the names, draw the weights.
dataset = find_dataset()  # names.txt here, else the census names shipped with the `names` package
run = start_run(dataset.docs, seed=42)
print(f"data: {dataset.source}; vocabulary {run.tokenizer.chars!r} + BOS")

# 2. Which token: position 2 of "emma" is "m", after the context [BOS, e]; the target is "m".
spec = resolve_token(run.tokenizer, run.model.config.block_size, word="emma", pos=2)
print(
    f"token {run.tokenizer.token_name(spec.token)!r} at position {spec.pos}, "
    f"context {[run.tokenizer.token_name(t) for t in spec.context]}, target {run.tokenizer.token_name(spec.target)!r}"
)

# 3. Forward to this position's loss, then backward. Both granularities give the same numbers.
for granularity in ("atomic", "fused"):
    graph = token_graph(run.model, spec, granularity=granularity)
    nodes = topological_order(graph.root)
    edges = sum(len(node.children) for node in nodes)
    print(f"\n{granularity}: loss {graph.root.data:.6f}, {len(nodes):,} nodes, {edges:,} edges")
    ops = Counter(node.op.name for node in nodes)
    print("  ops:", ", ".join(f"{name} {count:,}" for name, count in ops.most_common()))

# 4. Every node knows where it lives. Count the nodes per block of the model (fused graph).
blocks = Counter(parse_tag(node.tag).path.split(".")[0] for node in nodes)
print("\nnodes per top-level tag:", dict(sorted(blocks.items())))

# 5. A few named nodes: the attention weights of head 0 at position 2 over positions 0..2,
#    and the probability the model gave the target.
for node in nodes:
    if node.tag and node.tag.startswith("layer0.attn.h0.weights[") and node.tag.endswith("@pos2"):
        print(f"  {node.tag:36} data {node.data:+.6f}  grad {node.grad:+.6f}")
target_prob = graph.probs[spec.target]
print(f"  {target_prob.tag:36} data {target_prob.data:+.6f}  (loss = -log of it)")

# 6. A parameter's gradient from this one token: row 0 of the query weights.
wq = run.model.weights["layer0.attn.wq"][0][:4]
print("\n" + "\n".join(f"  {p.tag:24} data {p.data:+.6f}  grad {p.grad:+.6f}" for p in wq))
