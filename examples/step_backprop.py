"""Backprop, one node at a time: the first steps of one token's backward pass, printed.

Builds the graph of a fresh model predicting the letter after BOS in "emma" (position 0,
target "e") without running backward, then lets a ``Stepper`` run backward itself, one node
at a time. Each step prints the node and, for each of its inputs, the chain rule

    child.grad += local ∂ × node.grad

with the numbers before and after. Then it runs to a breakpoint (the first exp of the
softmax), steps back, and checks that the end state is exactly what ``backward()`` gives.

    python examples/step_backprop.py
"""

from microgpt.data import find_dataset
from microgpt.graph import resolve_token, token_graph
from microgpt.train import start_run
from viz.step import Breakpoint, Stepper
from viz.trace import Trace

# 1. A fresh model (seed 42) and the graph of one token, built without its backward pass.
run = start_run(find_dataset().docs, seed=42)
spec = resolve_token(run.tokenizer, run.model.config.block_size, word="emma", pos=0)
graph = token_graph(run.model, spec, backward=False)
stepper = Stepper(Trace(graph.root))
print(f"{stepper.total} steps: every node with inputs, from the loss back to the first layers")
print(f"start: {stepper.progress()}; the loss's grad is 1, every other intermediate grad 0\n")

# 2. The first five steps: the loss (-log p), the log, then into the softmax.
for record in stepper.run(5):
    print(stepper.format(record))
print()

# 3. Continue to the first exp of the softmax; one step back undoes it exactly.
record = stepper.run_until([Breakpoint.parse("op:exp")])
print("at the breakpoint op:exp:")
print(stepper.format(record))
before = list(stepper.grads)
stepper.step_back()
stepper.step()
assert stepper.grads == before, "a step back then forward gives the same grads"

# 4. Finish, and compare with the engine's own backward on a second graph: the same bits.
stepper.finish()
reference = Trace(token_graph(run.model, spec, backward=True).root)
same = all(a == b.grad for a, b in zip(stepper.grads, reference.nodes))
print(f"\n{stepper.progress()}; equal to backward() for all {len(reference)} nodes: {same}")
print("largest |grad|:", ", ".join(f"{stepper.trace.ids[i]} {g:.4g}" for i, g in stepper.largest(3)))
