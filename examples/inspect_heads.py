"""Train a small GPT for a few dozen steps, then look inside its attention heads.

Run from the repository root:  python examples/inspect_heads.py

For each head of the trained model it prints what `mgx inspect layer0.attn.hN --sort grad`
would: the head's q, k, v, scores, attention weights and output at one position, with their
data and gradients, largest gradients first. Then it asks why one query weight's gradient is
what it is (`--why`): the contributions of each of its uses, by position and by head.
"""

from __future__ import annotations

from rich.console import Console

from microgpt.graph import resolve_token, token_graph
from microgpt.train import TrainState, start_run, train
from viz.pattern import select
from viz.trace import Trace
from viz.tree import build_tree

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia", "harper", "evelyn"]
STEPS = 40


def main() -> None:
    console = Console(highlight=False)
    run = start_run(DOCS, seed=42, n_embd=8, n_head=2, block_size=12)
    losses: list[float] = []
    train(run.model, run.tokenizer, run.docs, STEPS, TrainState(), on_step=lambda step, loss: losses.append(loss))
    console.print(f"trained {STEPS} steps: loss {losses[0]:.3f} at the first, {losses[-1]:.3f} at the last")

    # The graph of one token: 'm' at position 2 of "emma", after [BOS] e, predicting 'm'.
    spec = resolve_token(run.tokenizer, run.model.config.block_size, word="emma", pos=2)
    graph = token_graph(run.model, spec)
    trace = Trace(graph.root)
    console.print(f"graph of 'm' at pos 2 of 'emma': {len(trace)} nodes, loss {graph.root.data:.4f}\n")

    for head in range(run.model.config.n_head):
        pattern = f"layer0.attn.h{head}"
        tree = build_tree(
            trace, select(trace, pattern), title=f"{pattern} (largest |grad| first)", limit=3, sort="grad"
        )
        console.print(tree)
        # the attention weights this head put on each earlier position
        weights = [trace.nodes[i] for i in select(trace, f"{pattern}.weights[*]")]
        console.print("attention weights over positions 0..2: " + ", ".join(f"{w.data:.3f}" for w in weights) + "\n")

    (wq,) = select(trace, "attn.wq[1,3]")
    console.print(build_tree(trace, [wq], title="why does wq[1,3] have this gradient?", depth=0, why=True))


if __name__ == "__main__":
    main()
