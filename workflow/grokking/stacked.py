"""The generic stacked-model path: M ordinary ``nn.Module`` members trained as one ensemble.

A new task (transformer, MLP, LSTM, ...) writes its model as a plain ``nn.Module`` and its loss for
one member; this module does the stacking, so no task writes stacked layers or a backward pass
(DESIGN section 4). The toy model's hand-fused step (``grokking.toy_step``) and the MNIST engine's
stacked layers (``grokking.ensemble``) are per-task fast paths; ``tests/test_stacked.py`` checks that
this path reproduces their T values.

How it works (the PyTorch "model ensembling" recipe):

- ``torch.func.stack_module_state`` copies the members' parameters and buffers into tensors with a
  leading member dimension M (``{name: [M, ...]}``, named as in ``state_dict``). The parameters
  are new autograd leaves, the tensors a batched optimizer (``grokking.optim``) updates in place.
- One copy of the module lives on the meta device (no storage) as the ``base``: it only supplies
  the code of ``forward``. ``torch.func.functional_call(base, member state, inputs)`` runs that
  code on one member's tensors, and ``torch.func.vmap`` maps it over the member dimension, so every
  layer becomes one batched kernel over all members.
- Gradients: ``value_and_gradients`` maps ``torch.func.grad_and_value`` of one member's loss over
  the members (one graph that ``torch.compile`` can fuse; ``compile=True``); ``gradients`` takes
  them from autograd instead, one ``torch.autograd.grad(losses.sum(), params)``. Members never mix
  (member m's output depends on member m's slices only), so the gradient of the sum with respect
  to member m's slice is member m's own gradient, and a NaN stays in its member.

What vmap batches (torch 2.14, CPU; checked by the tests):

- ``nn.Linear``, ``nn.Embedding``, activations, ``nn.LayerNorm``, ``nn.MultiheadAttention`` and
  ``nn.TransformerEncoderLayer``: yes. Two kernels have no batching rule, and vmap would run them
  member by member (correct, with a "performance drop" warning): CPU flash attention
  (``_scaled_dot_product_flash_attention_for_cpu``) and the inference fast path of the attention
  modules (``_transformer_encoder_layer_fwd``, ``_native_multi_head_attention``, taken in eval mode
  without grad). ``forward`` therefore runs with the math attention backend (plain matmuls and
  softmax, which vmap batches) and with the modules' fast path disabled (``torch.backends.mha``).
  ``math_attention=False`` keeps the default kernels (worth measuring on CUDA, whose fused attention
  kernels were not checked here). Measured on 2 CPU cores, 8 members of d=128 with 512 sequences,
  forward and backward: 1.82 s with the flash fallback, 0.97 s with math attention, and 0.68 s for a
  plain loop over members: vmap saves dispatch overhead, which matters for small members (the toy
  model, modular-arithmetic sizes), not for members that already fill the cores.
- ``nn.LSTM`` / ``nn.GRU`` / ``nn.LSTMCell``: no ("Batching rule not implemented for
  aten::lstm.input", pytorch/pytorch#105982, still open). Two ways out: ``VmapLSTM``, a drop-in
  subclass of ``nn.LSTM`` (same parameters, names and initialisation) whose forward is written in
  plain tensor operations that vmap batches; or ``StackedModel(..., vectorize=False)``, which runs
  any module member by member (a Python loop over ``functional_call``; M times the dispatch cost,
  fine for large members, slow for small ones).
- Dropout and other random operations: vmap refuses them unless told how to draw. The default
  ``randomness="different"`` draws independent masks per member, which is what M independent runs
  would do. They come from the global torch generator in one draw of shape [M, ...], so a run is
  deterministic under ``torch.manual_seed``, but a member's masks depend on its position and on M:
  with dropout, a member's trajectory is not the one it would have alone, nor after a compaction
  the one it would have had without it. (Without random operations none of this applies and a
  member equals the module trained alone.) ``randomness="same"`` shares one mask by all members.

Speed, toy model, 21 members, 2 shared CPU cores, float32 (float64): the generic path runs at 0.9x
(0.8x) the hand-fused path's steps/s eager; with the batched AdamW compiled, at 0.5x (0.6x) the fully
compiled fast path (73 vs 139 steps/s; the forward and backward here stay eager).

Parameters unused by ``forward`` get zero gradients (``materialize_grads``), so weight decay still
applies to them; ``torch.optim`` would skip a parameter whose ``.grad`` is None.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils import _pytree as pytree

from grokking.ensemble import Params
from grokking.optim import BatchedOptimizer, Groups

InDims = int | None | tuple[int | None, ...]  # per input: 0 = one slice per member, None = shared


def group_parameters(names: Iterable[str], rules: Mapping[str, Sequence[str]]) -> Groups:
    """Optimizer groups from name prefixes: ``{"embedding": ("embedding.",), "decoder": ("decoder.",)}``.

    Each parameter goes to the first group (in ``rules`` order) that has a prefix of its name, so a
    catch-all ``""`` can come last. A parameter no rule matches is an error rather than left out: the
    batched optimizer updates only grouped parameters, so it would silently never train.
    """
    groups: dict[str, list[str]] = {group: [] for group in rules}
    unmatched = []
    for name in names:
        group = next((g for g, prefixes in rules.items() if any(name.startswith(p) for p in prefixes)), None)
        if group is None:
            unmatched.append(name)
        else:
            groups[group].append(name)
    if unmatched:
        raise ValueError(f"parameters {unmatched} match no group of {dict(rules)}")
    return {group: tuple(members) for group, members in groups.items()}


def _normalise_in_dims(in_dims: InDims, n_inputs: int) -> tuple[int | None, ...]:
    """One in_dim per input: a single value applies to every input."""
    if isinstance(in_dims, tuple):
        if len(in_dims) != n_inputs:
            raise ValueError(f"{len(in_dims)} in_dims for {n_inputs} inputs")
        return in_dims
    return (in_dims,) * n_inputs


@contextlib.contextmanager
def _batchable_attention(enabled: bool) -> Iterator[None]:
    """Attention kernels vmap batches (see the module docstring): the math SDPA backend, and the
    attention modules' inference fast path off. The fast-path switch is process-global, so it is
    restored on exit."""
    if not enabled:
        yield
        return
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


class StackedModel:
    """M members of one architecture: stacked state, batched forward, per-member losses and
    gradients, compaction and export. See the module docstring for what vmap supports.

    ``params`` ({name: [M, ...]}, autograd leaves) is the dict a batched optimizer takes; its
    parameter groups come from ``group_parameters(model.params, rules)``.
    """

    def __init__(
        self,
        modules: Sequence[nn.Module],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        randomness: str = "different",
        vectorize: bool = True,
        math_attention: bool = True,
        compile: bool = False,
    ):
        if not modules:
            raise ValueError("a stacked model needs at least one member")
        if len({type(m) for m in modules}) != 1 or len({m.training for m in modules}) != 1:
            raise ValueError("members must be modules of one class, all in the same train/eval mode")
        params, buffers = stack_module_state(list(modules))
        self.params: Params = {n: _converted(p, dtype, device).requires_grad_() for n, p in params.items()}
        self.buffers: Params = {n: _converted(b, dtype, device) for n, b in buffers.items()}
        self.base = copy.deepcopy(modules[0]).to("meta")  # the code of forward; the state is ours
        if dtype is not None:
            self.base.to(dtype)
        self.randomness = randomness
        self.vectorize = vectorize
        self.math_attention = math_attention
        self.compile = compile and vectorize
        self._functions: dict[tuple, Callable] = {}  # vmapped (and compiled) functions by signature

    @property
    def members(self) -> int:
        return len(next(iter(self.params.values())))

    def train(self, mode: bool = True) -> "StackedModel":
        """Train or eval mode of every member (dropout, batch-norm statistics)."""
        self.base.train(mode)
        return self

    def eval(self) -> "StackedModel":
        return self.train(False)

    # ----------------------------------------------------------------------------- forward
    def _member_call(self, params: Params, buffers: Params, *inputs: Any) -> Any:
        """The base module's forward on one member's state."""
        return functional_call(self.base, (params, buffers), inputs)

    def forward(self, *inputs: Any, in_dims: InDims = None) -> Any:
        """Every member's output, stacked on a leading dimension M (tuples of outputs stay tuples).

        ``in_dims`` per input: None (the default) shares the input by all members, e.g. one batch
        [batch, ...] for the whole shard; 0 gives member m the slice ``input[m]`` of an [M, ...] input
        (members with their own data split).
        """
        dims = _normalise_in_dims(in_dims, len(inputs))
        with _batchable_attention(self.math_attention):
            if not self.vectorize:
                return self._forward_loop(inputs, dims)
            mapped = self._function(("forward", dims, self.randomness), lambda: vmap(
                self._member_call, in_dims=(0, 0, *dims), randomness=self.randomness))
            try:
                return mapped(self.params, self.buffers, *inputs)
            except RuntimeError as error:
                if "Batching rule not implemented" not in str(error):
                    raise
                raise RuntimeError(f"{error}\nvmap cannot batch this module: use VmapLSTM for nn.LSTM, "
                                   f"or StackedModel(..., vectorize=False) to run members one by one") from None

    __call__ = forward

    def _forward_loop(self, inputs: tuple[Any, ...], dims: tuple[int | None, ...]) -> Any:
        """The fallback for modules vmap cannot batch: member by member, outputs stacked (random
        operations draw member after member from the global generator)."""
        outputs = []
        for m in range(self.members):
            member_inputs = [x if d is None else x.select(d, m) for x, d in zip(inputs, dims)]
            outputs.append(self._member_call(self._slice(self.params, m), self._slice(self.buffers, m),
                                             *member_inputs))
        return pytree.tree_map(lambda *xs: torch.stack(xs), *outputs)

    def _function(self, key: tuple, build: Callable[[], Callable]) -> Callable:
        """The vmapped function ``build`` makes, built once per signature ``key`` and, with
        ``compile``, compiled by ``torch.compile``: Inductor fuses the bias adds vmap keeps apart
        from the products, the activations and the loss into a few loops (a training step 2-2.7x
        faster for a small transformer on one CPU core, benchmarks/modular.py). Shapes start
        static; a dimension that changes (an epoch's smaller last batch, compaction) is made
        dynamic at its first recompilation. All compiled functions share Dynamo's cache of vmap's
        wrapper (8 entries, then eager with a warning), so callers keep input shapes few: the
        modular trainer pads its evaluation chunks to one shape. (``dynamic=True`` from the start
        was tried: the batched ``linear`` failed on symbolic weight sizes and Dynamo then skipped
        the wrapper for good, training steps included.) Compiling costs 20-45 s per process and
        function here (about 10 s from Inductor's on-disk cache), so it pays only for long runs."""
        if key not in self._functions:
            function = build()
            self._functions[key] = torch.compile(function) if self.compile else function
        return self._functions[key]

    @staticmethod
    def _slice(state: Params, m: int) -> Params:
        return {n: t[m] for n, t in state.items()}

    # ----------------------------------------------------------------------------- losses, gradients
    def losses(self, loss_fn: Callable[..., torch.Tensor], output: Any, *targets: Any,
               in_dims: InDims = None) -> torch.Tensor:
        """[M] losses: ``loss_fn(member output, *targets) -> scalar`` written for one member (e.g.
        ``F.cross_entropy``) and mapped over the members. ``in_dims`` are the targets' (None: shared)."""
        dims = _normalise_in_dims(in_dims, len(targets))
        return vmap(loss_fn, in_dims=(0, *dims), randomness=self.randomness)(output, *targets)

    def value_and_gradients(self, loss_fn: Callable[..., torch.Tensor], inputs: tuple[Any, ...],
                            targets: tuple[Any, ...] = (), in_dims: InDims = None,
                            target_dims: InDims = None) -> tuple[Any, torch.Tensor, Params]:
        """Every member's output, [M] losses and gradients {name: [M, ...]} in one call: forward,
        ``loss_fn(member output, *targets)`` and the backward pass of one member, mapped over the
        members (``torch.func.grad_and_value`` under ``vmap``), compiled as one graph with ``compile``.
        The same numbers as ``forward`` + ``losses`` + ``gradients`` to rounding (tests)."""
        dims = _normalise_in_dims(in_dims, len(inputs))
        tdims = _normalise_in_dims(target_dims, len(targets))
        if not self.vectorize:
            output = self.forward(*inputs, in_dims=dims)
            losses = self.losses(loss_fn, output, *targets, in_dims=tdims)
            grads = self.gradients(losses)
            return pytree.tree_map(lambda t: t.detach(), output), losses.detach(), grads
        n_inputs = len(inputs)

        def member(params: Params, buffers: Params, *data: Any) -> tuple[torch.Tensor, Any]:
            output = self._member_call(params, buffers, *data[:n_inputs])
            return loss_fn(output, *data[n_inputs:]), output

        def build() -> Callable:
            return vmap(grad_and_value(member, has_aux=True), in_dims=(0, 0, *dims, *tdims),
                        randomness=self.randomness)

        with _batchable_attention(self.math_attention):
            mapped = self._function(("value_and_gradients", loss_fn, dims, tdims, self.randomness), build)
            params = {n: p.detach() for n, p in self.params.items()}  # functorch differentiates, not autograd
            grads, (losses, output) = mapped(params, self.buffers, *inputs, *targets)
        return output, losses, grads

    def gradients(self, losses: torch.Tensor) -> Params:
        """Each member's gradient of its own loss ([M] -> {name: [M, ...]}), by one backward pass
        of the sum: members are independent, so d(sum)/d(member m) = d(loss m)/d(member m)."""
        names = list(self.params)
        grads = torch.autograd.grad(losses.sum(), [self.params[n] for n in names],
                                    allow_unused=True, materialize_grads=True)
        return dict(zip(names, grads))

    # ----------------------------------------------------------------------------- compaction, export
    def select(self, keep: torch.Tensor, optimizer: BatchedOptimizer | None = None) -> None:
        """Keep only members ``keep`` (positions, in order), and the optimizer's state of them."""
        with torch.no_grad():
            self.params = {n: p.detach().index_select(0, keep).requires_grad_() for n, p in self.params.items()}
            self.buffers = {n: b.index_select(0, keep) for n, b in self.buffers.items()}
        if optimizer is not None:
            optimizer.select(self.params, keep)

    @torch.no_grad()
    def export(self, m: int) -> nn.Module:
        """Member ``m`` as a plain module (a copy): for saving, tests, or training on alone."""
        device = next(iter(self.params.values())).device
        module = copy.deepcopy(self.base).to_empty(device=device)
        for name, tensor in (*module.named_parameters(), *module.named_buffers()):
            tensor.copy_(self.params[name][m] if name in self.params else self.buffers[name][m])
        return module


def _converted(t: torch.Tensor, dtype: torch.dtype | None, device: torch.device | str | None) -> torch.Tensor:
    """A detached copy on ``device``; floating tensors in ``dtype`` (integer buffers keep theirs)."""
    return t.detach().to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)


@dataclass
class StepOutput:
    output: Any  # every member's (pre-update) output, detached
    losses: torch.Tensor  # [M], detached; NaN/Inf marks a diverging member


def train_step(
    model: StackedModel,
    optimizer: BatchedOptimizer,
    loss_fn: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    targets: tuple[Any, ...] = (),
    in_dims: InDims = None,
    target_dims: InDims = None,
) -> StepOutput:
    """One training step of every member: forward, per-member loss, one backward, optimizer update.

    The step a task's loop repeats; accuracies, thresholds and stopping stay with the task (they
    differ between tasks). The returned output is the model's before the update.
    """
    output, losses, grads = model.value_and_gradients(loss_fn, inputs, targets, in_dims, target_dims)
    optimizer.step(grads)
    return StepOutput(output=output, losses=losses)


class VmapLSTM(nn.LSTM):
    """``nn.LSTM`` in plain tensor operations, so that vmap can batch it (the fused LSTM kernel has
    no batching rule). Same constructor, parameters, names and initialisation as ``nn.LSTM``, so
    members can be built, exported and saved as ``nn.LSTM`` state; same outputs up to rounding.

    The input projection of all time steps is one matmul per layer; only the recurrent one loops over
    time. Supported: ``num_layers``, ``bias``, ``batch_first``, ``dropout`` between layers, unbatched
    input and an initial state. Not supported: ``bidirectional`` and ``proj_size`` (an error).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.bidirectional or self.proj_size:
            raise ValueError("VmapLSTM supports neither bidirectional nor proj_size")

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        unbatched = x.dim() == 2  # [seq, features], state [layers, hidden]: a batch of one
        batch_dim = 0 if self.batch_first else 1
        if unbatched:
            x = x.unsqueeze(batch_dim)
            hx = None if hx is None else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        if self.batch_first:
            x = x.transpose(0, 1)  # [seq, batch, features]
        if hx is None:
            zeros = x.new_zeros(self.num_layers, x.shape[1], self.hidden_size)
            hx = (zeros, zeros)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout and self.training:
                x = nn.functional.dropout(x, self.dropout, training=True)
            x, (h, c) = self._layer(layer, x, hx[0][layer], hx[1][layer])
            h_n.append(h)
            c_n.append(c)
        if self.batch_first:
            x = x.transpose(0, 1)
        state = (torch.stack(h_n), torch.stack(c_n))
        if unbatched:
            x, state = x.squeeze(batch_dim), (state[0].squeeze(1), state[1].squeeze(1))
        return x, state

    def _layer(self, layer: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One layer over the sequence x [seq, batch, in]: gates i, f, g, o as torch orders them."""
        w_ih, w_hh = getattr(self, f"weight_ih_l{layer}"), getattr(self, f"weight_hh_l{layer}")
        projected = x @ w_ih.T  # [seq, batch, 4 * hidden]
        if self.bias:
            projected = projected + getattr(self, f"bias_ih_l{layer}") + getattr(self, f"bias_hh_l{layer}")
        outputs = []
        for t in range(x.shape[0]):
            i, f, g, o = (projected[t] + h @ w_hh.T).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs), (h, c)
