"""The whole model against an independent PyTorch float64 implementation: same loss, and the
same gradient for every parameter, in both granularities."""

from __future__ import annotations

import math
import random
import warnings

import pytest

from microgpt.data import Tokenizer
from microgpt.model import GPT, GPTConfig
from microgpt.train import TrainState, train

TORCH_MISSING = (
    "PyTorch is not installed; the cross-check needs the torch extra: pip install -e '.[test,torch]' "
    "(pinned for Python 3.11)"
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # "Failed to initialize NumPy": not needed here
    torch = pytest.importorskip("torch", reason=TORCH_MISSING)

F = torch.nn.functional


def rmsnorm(x: torch.Tensor) -> torch.Tensor:
    return x * (x.pow(2).mean(-1, keepdim=True) + 1e-5) ** -0.5


def torch_loss(config: GPTConfig, w: dict[str, torch.Tensor], tokens: list[int]) -> torch.Tensor:
    """The GPT over a whole document at once, with a causal mask instead of a KV cache."""
    n = min(config.block_size, len(tokens) - 1)
    inputs = torch.tensor(tokens[:n])
    targets = torch.tensor(tokens[1 : n + 1])
    n_head, head_dim = config.n_head, config.head_dim
    x = rmsnorm(w["wte"][inputs] + w["wpe"][:n])  # (n, n_embd)
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    for i in range(config.n_layer):
        h = rmsnorm(x)
        q, k, v = (
            (h @ w[f"layer{i}.attn.{name}"].T).view(n, n_head, head_dim).transpose(0, 1)  # (n_head, n, head_dim)
            for name in ("wq", "wk", "wv")
        )
        scores = (q @ k.transpose(1, 2)) / math.sqrt(head_dim)  # (n_head, n, n)
        weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        heads = (weights @ v).transpose(0, 1).reshape(n, config.n_embd)
        x = x + heads @ w[f"layer{i}.attn.wo"].T
        h = rmsnorm(x)
        x = x + F.relu(h @ w[f"layer{i}.mlp.fc1"].T) @ w[f"layer{i}.mlp.fc2"].T
    logits = x @ w["lm_head"].T  # (n, vocab_size)
    return F.cross_entropy(logits, targets)  # the mean over positions


CASES = [
    # (seed, n_layer, n_embd, n_head, block_size, vocab_size, document length)
    (0, 1, 8, 2, 8, 5, 4),
    (1, 2, 8, 2, 8, 7, 6),
    (2, 1, 8, 4, 4, 6, 9),  # longer than the context: the loss stops at block_size positions
    (3, 2, 12, 3, 8, 10, 2),  # one position
    (4, 1, 8, 1, 8, 9, 8),
]


@pytest.mark.parametrize("granularity", ["atomic", "fused"])
@pytest.mark.parametrize(("seed", "n_layer", "n_embd", "n_head", "block_size", "vocab_size", "length"), CASES)
def test_every_parameter_gradient_equals_pytorch_float64(
    granularity: str, seed: int, n_layer: int, n_embd: int, n_head: int, block_size: int, vocab_size: int, length: int
) -> None:
    config = GPTConfig(vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=block_size)
    rng = random.Random(seed)
    model = GPT.initialise(config, rng)
    tokens = [rng.randrange(vocab_size) for _ in range(length)]

    loss = model.document_loss(tokens, granularity)
    loss.backward()

    weights = {
        name: torch.tensor(matrix, dtype=torch.float64, requires_grad=True)
        for name, matrix in model.weight_data().items()
    }
    expected = torch_loss(config, weights, tokens)
    expected.backward()

    assert math.isclose(loss.data, expected.item(), rel_tol=1e-12)
    mismatches = []
    for name, matrix in model.weights.items():
        torch_grad = weights[name].grad.tolist()
        for i, row in enumerate(matrix):
            for j, p in enumerate(row):
                if not math.isclose(p.grad, torch_grad[i][j], rel_tol=1e-10, abs_tol=1e-12):
                    mismatches.append((p.tag, p.grad, torch_grad[i][j]))
    assert mismatches == []
    if length > 2:  # with one position the attention weight is 1 whatever the query: wq has no gradient
        assert any(p.grad != 0 for p in model.weights["layer0.attn.wq"][0])


# -- the non-finite edge cases against PyTorch ----------------------------------------------
# Where this engine decides otherwise than PyTorch, on purpose (README, "Non-finite values"):
# relu's derivative at NaN (PyTorch 1, here NaN) and NaN ** 0 (PyTorch 1, here NaN).
TORCH_DIFFERS = {("relu(a)", "a = nan"), ("a ** n", "a = nan, n = 0")}


def torch_edge_case(expression: str, values: dict[str, float]) -> tuple[float, list[float]]:
    """The value and the gradient of each input of one edge case, computed by PyTorch (float64)."""
    inputs = {
        name: torch.tensor(x, dtype=torch.float64, requires_grad=True) for name, x in values.items() if name != "n"
    }
    a, b = inputs.get("a"), inputs.get("b")
    out = {
        "log(a)": lambda: torch.log(a),
        "exp(a)": lambda: torch.exp(a),
        "a + b": lambda: a + b,
        "a × b": lambda: a * b,
        "a ** n": lambda: a ** values["n"],
        "relu(a)": lambda: torch.relu(a),
        "-a": lambda: -a,
        "a − b": lambda: a - b,
        "a / b": lambda: a / b,
    }[expression]()
    out.backward()
    return out.item(), [t.grad.item() for t in inputs.values()]


def test_every_non_finite_edge_case_gives_pytorchs_value_and_gradient() -> None:
    from test_nonfinite import EDGE_CASES, build, parse_inputs, text

    checked = 0
    for expression, inputs, fn, _, _ in EDGE_CASES:
        node, leaves = build(inputs, fn)
        node.backward()
        value, torch_grads = torch_edge_case(expression, parse_inputs(inputs))
        ours = [text(node.data)] + [text(leaf.grad) for leaf in leaves]
        theirs = [text(value)] + [text(g) for g in torch_grads]
        if (expression, inputs) in TORCH_DIFFERS:
            assert ours != theirs, f"{expression} at {inputs} now agrees with PyTorch: drop it from TORCH_DIFFERS"
            continue
        assert text(node.data) == text(value), (expression, inputs)
        assert [text(leaf.grad) for leaf in leaves] == [text(g) for g in torch_grads], (expression, inputs)
        checked += 1
    assert checked == len(EDGE_CASES) - len(TORCH_DIFFERS)


# -- fifty training steps of a larger model against PyTorch --------------------------------
def torch_training_losses(config: GPTConfig, weights: dict, documents: list[list[int]], steps: int) -> tuple:
    """The same Adam (bias correction, lr decaying linearly to 0), written out in PyTorch."""
    lr, beta1, beta2, eps = 0.01, 0.85, 0.99, 1e-8
    w = {name: torch.tensor(matrix, dtype=torch.float64, requires_grad=True) for name, matrix in weights.items()}
    m = {name: torch.zeros_like(t) for name, t in w.items()}
    v = {name: torch.zeros_like(t) for name, t in w.items()}
    losses = []
    for step in range(steps):
        loss = torch_loss(config, w, documents[step % len(documents)])
        loss.backward()
        losses.append(loss.item())
        lr_t = lr * (1 - step / steps)
        with torch.no_grad():
            for name, t in w.items():
                m[name] = beta1 * m[name] + (1 - beta1) * t.grad
                v[name] = beta2 * v[name] + (1 - beta2) * t.grad**2
                m_hat = m[name] / (1 - beta1 ** (step + 1))
                v_hat = v[name] / (1 - beta2 ** (step + 1))
                t -= lr_t * m_hat / (v_hat.sqrt() + eps)
                t.grad = None
    return losses, {name: t.detach() for name, t in w.items()}


@pytest.mark.parametrize("granularity", ["atomic", "fused"])
def test_fifty_steps_of_a_two_layer_model_equal_pytorch_loss_by_loss_and_weight_by_weight(granularity: str) -> None:
    letters = "abcdefghijklmnopqrstuvwxyz"
    rng = random.Random(7)
    docs = ["".join(rng.choice(letters[:12]) for _ in range(rng.randint(2, 9))) for _ in range(20)]
    tokenizer = Tokenizer.from_documents(docs)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_embd=32, n_head=4, block_size=16)
    model = GPT.initialise(config, random.Random(11))
    initial = model.weight_data()
    steps = 50

    losses: list[float] = []
    train(
        model,
        tokenizer,
        docs,
        steps,
        TrainState(),
        granularity=granularity,
        on_step=lambda _, loss: losses.append(loss),
    )
    expected, torch_weights = torch_training_losses(
        config, initial, [tokenizer.document_tokens(d) for d in docs], steps
    )

    assert len(losses) == steps
    for ours, theirs in zip(losses, expected):
        assert math.isclose(ours, theirs, rel_tol=1e-10)
    for name, matrix in model.weight_data().items():
        ours_t = torch.tensor(matrix, dtype=torch.float64)
        difference = (ours_t - torch_weights[name]).norm().item()
        assert difference <= 1e-9 * torch_weights[name].norm().item(), name


@pytest.mark.parametrize("granularity", ["atomic", "fused"])
def test_finite_differences_on_the_replay_agree_with_pytorch(granularity: str) -> None:
    from microgpt.graph import word_graph
    from viz.check import check_gradients
    from viz.trace import Trace

    config = GPTConfig(vocab_size=7, n_layer=2, n_embd=8, n_head=2, block_size=8)
    rng = random.Random(1)
    model = GPT.initialise(config, rng)
    tokens = [rng.randrange(7) for _ in range(6)]
    trace = Trace(*word_graph(model, tokens, granularity=granularity))
    weights = {
        name: torch.tensor(matrix, dtype=torch.float64, requires_grad=True)
        for name, matrix in model.weight_data().items()
    }
    torch_loss(config, weights, tokens).backward()
    torch_grad = {p.tag: weights[name].grad[i, j].item() for name, matrix in model.weights.items()
                  for i, row in enumerate(matrix) for j, p in enumerate(row)}  # fmt: skip
    selection = [i for i, node in enumerate(trace.nodes) if node.op.name == "param"]
    results = check_gradients(trace, selection)
    disagree = [
        (trace.ids[r.node], r.numeric, torch_grad[trace.nodes[r.node].tag])
        for r in results
        if not r.kink and abs(r.numeric - torch_grad[trace.nodes[r.node].tag]) > 1e-5 + 1e-3 * abs(r.numeric)
    ]
    assert len(results) > 500 and disagree == []
