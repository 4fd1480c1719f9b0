"""Modular arithmetic (Power et al. 2022): the equations, their split, and the decoder transformer.

Equations. For a prime p and an operation o in {add, sub, mul, div}, every pair (x, y) of Z_p
(y != 0 for div) is one equation ``x o y = z`` with z = x + y, x - y, x * y or x * y^-1 mod p (the
true modular inverse; the course report's code computed x * y for its "division"). K-ary addition
(``arity`` K > 2) takes every K-tuple: x1 + ... + xK mod p. Tokens are the numbers 0..p-1, then the
operation (p) and "=" (p + 1); a sequence is ``x o y =`` (K-ary: ``x1 o x2 o ... xK =``) and the
answer is read at the last position. Equations are enumerated with the first operand outermost.

Split. ``torch.randperm(n)`` under ``torch.Generator().manual_seed(data_seed)``: the first
``int(train_fraction * n)`` equations train (teddykoker/grokking's ``int(frac * len)``), the rest
validate.

Model. The decoder of teddykoker/grokking (the course reports' code): learned token and position
embeddings, pre-LayerNorm blocks (causal self-attention, GELU MLP of width 4d), a final LayerNorm and
a linear head without bias over the whole vocabulary. ``layernorm: post`` is the block of
sadmankiba/Explaining-Grokking (paper 003) instead: x = LN(x + attention(x)), x = LN(x + mlp(x)),
then its final LayerNorm and a head with bias. Q, K, V and the output projection are separate
``nn.Linear`` layers, so their norms are recorded directly; they are initialised as
``nn.MultiheadAttention`` initialises its packed projection (Xavier-uniform over the [3d, d] matrix,
zero biases, zero output bias), so the initial distribution is the public code's.

Only the answer's logits are needed, so the last block computes attention queries, the output
projection and the MLP at the last position only (``last_only``): the same numbers as computing every
position and keeping the last one (tested), at a fraction of the last block's cost.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

OPERATIONS = ("add", "sub", "mul", "div")


def _answer(operation: str, operands: torch.Tensor, p: int) -> torch.Tensor:
    """z of each equation; operands [n, K]."""
    if operation == "add":
        return operands.sum(1) % p
    x, y = operands[:, 0], operands[:, 1]
    if operation == "sub":
        return (x - y) % p
    if operation == "mul":
        return (x * y) % p
    if operation == "div":
        inverse = torch.tensor([pow(int(v), p - 2, p) if v else 0 for v in range(p)])  # Fermat: p prime
        return (x * inverse[y]) % p
    raise ValueError(f"unknown operation {operation!r} (known: {', '.join(OPERATIONS)})")


def equations(p: int, operation: str, arity: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Every equation as (tokens [n, 2K], answers [n]): ``x1 op x2 ... xK =``."""
    operands = torch.tensor(list(itertools.product(range(p), repeat=arity)), dtype=torch.long)
    if operation == "div":
        operands = operands[operands[:, 1] != 0]
    answers = _answer(operation, operands, p)
    n = len(operands)
    tokens = torch.empty(n, 2 * arity, dtype=torch.long)
    tokens[:, 0::2] = operands
    tokens[:, 1:-1:2] = p  # the operation token
    tokens[:, -1] = p + 1  # "="
    return tokens, answers


@dataclass(frozen=True)
class ModularSplit:
    """One data seed's train / validation equations."""

    data_seed: int
    x_train: torch.Tensor  # [n_train, 2K] long tokens
    y_train: torch.Tensor  # [n_train] long answers
    x_val: torch.Tensor
    y_val: torch.Tensor


def modular_split(p: int, operation: str, arity: int, train_fraction: float, data_seed: int) -> ModularSplit:
    tokens, answers = equations(p, operation, arity)
    perm = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(int(data_seed)))
    n_train = int(train_fraction * len(tokens))
    train, val = perm[:n_train], perm[n_train:]
    return ModularSplit(int(data_seed), tokens[train], answers[train], tokens[val], answers[val])


def vocabulary(p: int) -> int:
    """Numbers 0..p-1, the operation and "="."""
    return p + 2


# ----------------------------------------------------------------------------------------- model
class Block(nn.Module):
    """Decoder block. Pre-LayerNorm: x + attention(ln1(x)), then x + mlp(ln2(x)); post-LayerNorm:
    ln1(x + attention(x)), then ln2(x + mlp(x))."""

    def __init__(self, width: int, heads: int, dropout: float, pre_norm: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads = heads
        self.pre_norm = pre_norm
        self.ln1 = nn.LayerNorm(width)
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)
        self.dropout = nn.Dropout(dropout)
        bound = math.sqrt(6.0 / (width + 3 * width))  # xavier_uniform_ of MHA's packed [3d, d] in_proj
        with torch.no_grad():
            for layer in (self.q, self.k, self.v):
                layer.weight.uniform_(-bound, bound)
                layer.bias.zero_()
            self.o.bias.zero_()

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [batch, T, d]; with ``last_only`` the output is the last position's only, [batch, 1, d]."""
        batch, T, d = x.shape
        H, dh = self.heads, d // self.heads
        h = self.ln1(x) if self.pre_norm else x
        queries = h[:, -1:] if last_only else h
        q = self.q(queries).view(batch, -1, H, dh).transpose(1, 2)  # [batch, H, Tq, dh]
        k = self.k(h).view(batch, T, H, dh).transpose(1, 2)
        v = self.v(h).view(batch, T, H, dh).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [batch, H, Tq, T]
        if not last_only:  # the last position sees every position: no mask needed there
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(causal, float("-inf"))
        attention = self.dropout(scores.softmax(-1))
        mixed = (attention @ v).transpose(1, 2).reshape(batch, -1, d)
        x = (x[:, -1:] if last_only else x) + self.dropout(self.o(mixed))
        if not self.pre_norm:
            x = self.ln1(x)
            return self.ln2(x + self.dropout(self.fc2(F.gelu(self.fc1(x)))))
        return x + self.dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


class Decoder(nn.Module):
    """Decoder-only transformer; ``forward`` returns the logits of the answer (last position)."""

    def __init__(self, vocab: int, seq_len: int, width: int = 128, layers: int = 2, heads: int = 4,
                 dropout: float = 0.0, layernorm: str = "pre"):
        super().__init__()
        if layernorm not in ("pre", "post"):
            raise ValueError(f"layernorm must be pre or post, not {layernorm!r}")
        pre = layernorm == "pre"
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(Block(width, heads, dropout, pre) for _ in range(layers))
        self.ln = nn.LayerNorm(width)  # both: 003's code ends nn.Sequential(*blocks, LayerNorm, Linear)
        self.head = nn.Linear(width, vocab, bias=not pre)

    def forward(self, tokens: torch.Tensor, noise: torch.Tensor | None = None,
                every_position: bool = False) -> torch.Tensor:
        """tokens [batch, T] -> logits [batch, vocab] at the last position ([batch, T, vocab] with
        ``every_position``, which computes the last block at every position too). ``noise`` [batch,
        T, width] is added to the input embeddings (003's noise level; drawn by the trainer)."""
        x = self.tokens(tokens) + self.positions.weight[: tokens.shape[1]]
        if noise is not None:
            x = x + noise
        for i, block in enumerate(self.blocks):
            x = block(x, last_only=not every_position and i == len(self.blocks) - 1)
        logits = self.head(self.ln(x))
        return logits if every_position else logits[:, -1]


class OperandMLP(nn.Module):
    """MLP on the concatenated embeddings of the operands (x1 .. xK): the operation and "=" tokens
    are the same in every equation of a study, so they carry nothing. (The course report's code fed
    its MLP the "=" token alone, which is why its Fig. 4 sits at chance.) ``layers`` hidden layers
    of ``hidden`` units with ``activation``, then a linear head."""

    def __init__(self, vocab: int, operands: int, width: int = 128, layers: int = 2, hidden: int = 512,
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        sizes = [operands * width] + [hidden] * layers
        act = {"relu": nn.ReLU, "gelu": nn.GELU}[activation]
        self.hidden = nn.Sequential(*(module for a, b in zip(sizes, sizes[1:])
                                      for module in (nn.Linear(a, b), act(), nn.Dropout(dropout))))
        self.head = nn.Linear(sizes[-1], vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, 2K] (``x1 o x2 ... xK =``) -> logits [batch, vocab]."""
        operands = self.tokens(tokens[:, 0::2])  # [batch, K, width]
        return self.head(self.hidden(operands.flatten(1)))


class SequenceLSTM(nn.Module):
    """LSTM over the whole token sequence (embedding, ``layers`` layers of ``width``), the answer
    read from the last position's output. ``VmapLSTM`` (plain tensor operations) so that members
    stack; the same parameters and numbers as ``nn.LSTM``."""

    def __init__(self, vocab: int, width: int = 128, layers: int = 2, dropout: float = 0.0):
        super().__init__()
        from grokking.stacked import VmapLSTM  # torch.func machinery, only where an LSTM is built

        self.tokens = nn.Embedding(vocab, width)
        self.lstm = VmapLSTM(width, width, num_layers=layers, batch_first=True, dropout=dropout)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, T] -> logits [batch, vocab] at the last position."""
        output, _ = self.lstm(self.tokens(tokens))
        return self.head(output[:, -1])


ARCHITECTURES = ("transformer", "mlp", "lstm")


def build_model(study: dict, model_seed: int, activation: str = "gelu", init_scale: float = 1.0) -> nn.Module:
    """A study's model (``model.architecture``) with the initialisation of ``model_seed`` (global
    RNG left untouched), every parameter then multiplied by ``init_scale`` (Omnigrok's alpha, the
    cell's); ``activation`` is the cell's, used by the MLP (the transformer's is GELU)."""
    model, vocab = study["model"], vocabulary(study["p"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(model_seed))
        if model["architecture"] == "mlp":
            built: nn.Module = OperandMLP(vocab, study["arity"], model["width"], model["layers"],
                                          model["hidden"] or 4 * model["width"], activation, model["dropout"])
        elif model["architecture"] == "lstm":
            built = SequenceLSTM(vocab, model["width"], model["layers"], model["dropout"])
        else:
            built = Decoder(vocab, 2 * study["arity"], model["width"], model["layers"], model["heads"],
                            model["dropout"], model["layernorm"])
    if init_scale != 1.0:
        with torch.no_grad():
            for parameter in built.parameters():
                parameter.mul_(init_scale)
    return built


def input_noise(shape: tuple[int, ...], std: float, batch_seed: int, model_seed: int, step: int) -> torch.Tensor:
    """The embedding noise of one member at one step: seeded by the member's seeds and the step only,
    so it does not depend on the shard's other members and a continuation draws the same."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence(
        [int(batch_seed), int(model_seed), int(step)]).generate_state(1)[0]))
    return torch.randn(shape, generator=generator) * std


def build_decoder(study: dict, model_seed: int) -> Decoder:
    """A study's transformer (the default architecture): ``build_model`` for a transformer study."""
    if study["model"].get("architecture", "transformer") != "transformer":
        raise ValueError(f"model.architecture is {study['model']['architecture']}, not transformer")
    return build_model({**study, "model": {"architecture": "transformer", **study["model"]}}, model_seed)


PROJECTIONS = ("q", "k", "v", "o")


def attention_norm_names(layers: int) -> list[list[str]]:
    """Parameter names of the Q, K, V, output projection weights of each layer (state_dict names)."""
    return [[f"blocks.{i}.{p}.weight" for p in PROJECTIONS] for i in range(layers)]


def epoch_order(n_train: int, batch_seed: int, model_seed: int, epoch: int) -> torch.Tensor:
    """The order in which one member visits its training equations in ``epoch`` (0-based): a
    permutation that depends on the member's seeds and the epoch only, so a continuation replays it
    and a member's batches do not depend on the other members of its shard."""
    rng = np.random.default_rng([int(batch_seed), int(model_seed), int(epoch)])  # no collisions
    return torch.from_numpy(rng.permutation(n_train))
