"""Loss landscapes around a trained model (paper 003, section 3.3 and appendix Table 4).

The report follows Li et al. 2018 ("Visualizing the loss landscape of neural nets"): two random
Gaussian directions d1, d2 in parameter space, and the loss of ``params + alpha d1 + beta d2`` on a
grid of (alpha, beta) in [-span, span]^2. Its claim: grokking optima sit in more uneven surfaces
than comprehension optima, with a loss range up to 8x larger.

Directions. ``filter_normalized_directions`` is Li et al.'s filter normalization: every row (output
unit, embedding vector, LSTM gate unit) of a direction is rescaled to the norm of the same row of the
parameter, so a step of alpha = 1 moves each unit by its own size and landscapes of models with
different weight norms compare; 1-D parameters (biases, LayerNorm) get a zero direction (Li et al.'s
``ignore biasbn``). The public code (loss_contour.py) did something else: one unit-norm Gaussian per
whole tensor, biases and LayerNorm included (``unit_directions``, kept to reproduce its pictures).
A unit-norm step is small next to a weight matrix of norm ~10-30, so its [-1, 1] explores a far
smaller neighbourhood than the filter-normalized [-1, 1] does. Both draw d1 for every tensor, then
d2, from one seeded ``torch.Generator``: every cell of a study gets the same raw draw.

Measured on. The first ``rows`` equations of each split (the split is a seeded permutation, so a
fixed random sample; the public code measured 2 random batches of 512). Loss is the mean
cross-entropy in float64 of float32 logits, accuracy the argmax's.

Evaluation. ``loss_plane`` stacks a chunk of grid points' parameters ([chunk, ...] per tensor) and
maps ``torch.func.functional_call`` over them with ``torch.vmap`` (the model-ensembling recipe,
``grokking.stacked``): one batched kernel per layer instead of a forward per point. Points and rows
are chunked so that a forward holds at most ``ROWS_PER_FORWARD`` (point, equation) pairs.

Cost, measured on one thread of a busy 2-core machine: the p = 97 post-LN decoder (d = 128), 21 x 21
points, 1024 rows per split, about 60 s per cell. Honest doubt: on that CPU a plain loop over points
ran 1.8x faster at 1024 rows (vmap's batched linear is a ``bmm`` plus a separate bias add where the
loop gets one fused ``addmm``) and broke even at 64-256 rows; the batched path is there for GPUs and
small models, where one kernel per layer instead of one per point is what pays.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from grokking import io
from grokking.landscape_verb import NORMALIZATIONS
from grokking.modular import ModularSplit, build_model

log = logging.getLogger("grokking")

Params = dict[str, torch.Tensor]
ROWS_PER_FORWARD = 16384  # (grid point, equation) pairs per batched forward: ~150 MB of a d=128 decoder's activations
GRIDS = ("train_loss", "train_acc", "val_loss", "val_acc")


# ------------------------------------------------------------------------------------ directions
def _gaussian(params: Params, generator: torch.Generator) -> Params:
    """One standard-normal tensor per parameter, drawn on the CPU in ``params`` order (deterministic)."""
    return {n: torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p) for n, p in params.items()}


def filter_normalized_directions(params: Params, seed: int) -> tuple[Params, Params]:
    """Two Gaussian directions, each row of a >= 2-D tensor scaled to that row's norm in ``params``;
    zero for 1-D tensors (Li et al. 2018, filter normalization with ``ignore biasbn``)."""
    generator = torch.Generator().manual_seed(int(seed))
    directions = []
    for _ in range(2):
        draw = _gaussian(params, generator)
        direction = {}
        for name, p in params.items():
            if p.dim() < 2:
                direction[name] = torch.zeros_like(p)
                continue
            d = draw[name].flatten(1)  # [rows, fan-in]: one output filter per row
            rows = p.detach().flatten(1)
            scale = rows.norm(dim=1, keepdim=True) / (d.norm(dim=1, keepdim=True) + 1e-10)
            direction[name] = (d * scale).view_as(p)
        directions.append(direction)
    return directions[0], directions[1]


def unit_directions(params: Params, seed: int) -> tuple[Params, Params]:
    """The public code's directions: a Gaussian per tensor (1-D ones too) scaled to unit norm."""
    generator = torch.Generator().manual_seed(int(seed))
    first, second = (_gaussian(params, generator) for _ in range(2))
    return ({n: d / (d.norm() + 1e-10) for n, d in first.items()},
            {n: d / (d.norm() + 1e-10) for n, d in second.items()})


DIRECTIONS = {"filter": filter_normalized_directions, "tensor": unit_directions}


# ------------------------------------------------------------------------------------ the plane
def loss_plane(model: nn.Module, params: Params, directions: tuple[Params, Params], x: torch.Tensor,
               y: torch.Tensor, alphas: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy on (x, y) at ``params + alpha d1 + beta d2``: two [len(alphas),
    len(betas)] float64 grids, entry [i, j] at (alphas[i], betas[j]). ``model`` supplies the code of
    forward (in eval mode); its own tensors stand in for any name ``params`` lacks (buffers)."""
    model.eval()
    d1, d2 = directions
    a, b = torch.meshgrid(alphas.double(), betas.double(), indexing="ij")
    a, b = a.flatten(), b.flatten()
    row_chunk = min(len(x), ROWS_PER_FORWARD)
    point_chunk = max(1, ROWS_PER_FORWARD // row_chunk)

    def point_logits(point: Params, rows: torch.Tensor) -> torch.Tensor:
        return functional_call(model, point, (rows,))

    batched = vmap(point_logits, in_dims=(0, None))  # one parameter set per point, shared rows
    loss_sum = torch.zeros(len(a), dtype=torch.float64)
    correct = torch.zeros(len(a), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(a), point_chunk):
            ca, cb = a[start:start + point_chunk], b[start:start + point_chunk]
            shape = lambda t: (-1,) + (1,) * t.dim()  # noqa: E731 (broadcast over a tensor's dims)
            stacked = {n: p + ca.to(p).view(shape(p)) * d1[n] + cb.to(p).view(shape(p)) * d2[n]
                       for n, p in params.items()}  # {name: [chunk, ...]}
            for r in range(0, len(x), row_chunk):
                xs, ys = x[r:r + row_chunk], y[r:r + row_chunk]
                logits = batched(stacked, xs)  # [chunk, rows, vocab]
                per_row = F.cross_entropy(logits.flatten(0, 1).double(), ys.repeat(len(ca)), reduction="none")
                loss_sum[start:start + len(ca)] += per_row.view(len(ca), -1).sum(1).cpu()
                correct[start:start + len(ca)] += (logits.argmax(-1) == ys).sum(1).double().cpu()
    shape = (len(alphas), len(betas))
    return (loss_sum / len(x)).view(shape), (correct / len(x)).view(shape)


def surface_stats(grid: Any) -> dict[str, float]:
    """Numbers behind "more uneven, the loss range up to 8x larger", over the finite entries:

    - ``range``: max - min of the grid;
    - ``roughness``: the mean over interior points of |z - mean of its 4 neighbours| (the 5-point
      discrete Laplacian / 4, in the grid's units): how far a point sticks out of its surroundings.
      A plane scores 0 and a smooth bowl c (alpha^2 + beta^2) scores c h^2 (h the grid step), so it
      is small for a smooth surface of any slope and grows with bumps, ridges and pits at the grid's
      scale. It depends on the resolution: compare landscapes of one span and one number of points.
    - ``relative_roughness``: roughness / range, the unevenness of the shape whatever its height;
    - ``nonfinite``: entries that are NaN or infinite (left out of everything above).
    """
    z = np.asarray(grid, dtype=np.float64)
    finite = np.isfinite(z)
    stats = {"min": np.nan, "max": np.nan, "range": np.nan, "roughness": np.nan, "relative_roughness": np.nan,
             "nonfinite": int((~finite).sum())}
    if not finite.any():
        return stats
    stats.update(min=float(z[finite].min()), max=float(z[finite].max()))
    stats["range"] = stats["max"] - stats["min"]
    if min(z.shape) >= 3:
        neighbours = (z[:-2, 1:-1] + z[2:, 1:-1] + z[1:-1, :-2] + z[1:-1, 2:]) / 4
        laplacian = z[1:-1, 1:-1] - neighbours
        ok = np.isfinite(laplacian)  # every one of the five points finite
        if ok.any():
            stats["roughness"] = float(np.abs(laplacian[ok]).mean())
            stats["relative_roughness"] = stats["roughness"] / stats["range"] if stats["range"] > 0 else 0.0
    return stats


# ------------------------------------------------------------------------------------ modular arithmetic
def modular_landscape(study: dict, params: Params, split: ModularSplit, model_seed: int, span: float,
                      points: int, rows: int, seed: int, activation: str = "gelu",
                      normalization: str = "filter") -> dict[str, Any]:
    """Train and validation loss and accuracy grids [points, points] of one trained model on the
    first ``rows`` equations of each split (0: all), with the axes and each grid's ``surface_stats``."""
    model = build_model(study, model_seed, activation)
    model.load_state_dict(params)  # the names must be the model's: a mismatch stops here, not as NaN
    params = {n: p.detach().float() for n, p in model.named_parameters()}  # buffers (if any) stay fixed
    directions = DIRECTIONS[normalization](params, seed)
    axis = torch.linspace(-span, span, points, dtype=torch.float64)
    take = slice(None) if rows <= 0 else slice(0, rows)
    out: dict[str, Any] = {"alphas": axis, "betas": axis.clone()}
    for name, x, y in (("train", split.x_train, split.y_train), ("val", split.x_val, split.y_val)):
        out[f"{name}_loss"], out[f"{name}_acc"] = loss_plane(model, params, directions, x[take], y[take], axis, axis)
        out[f"{name}_rows"] = len(y[take])
    out["stats"] = {key: surface_stats(out[key]) for key in GRIDS}
    out["settings"] = {"span": span, "points": points, "rows": rows, "seed": seed, "normalization": normalization}
    return out


def write_landscapes(study: dict, history_paths: list[str], dataset_path: str, cells_csv: str, out_path: str,
                     span: float, points: int, rows: int, seed: int, normalization: str = "filter") -> None:
    """{cell_id: landscape} of every cell whose history holds finite ``final_params``, in one file."""
    from grokking.curve_plots import read_cells

    histories = io.load_histories(history_paths)
    splits = {int(s): ModularSplit(**fields) for s, fields in io.load_torch(dataset_path).items()}
    cells = read_cells(cells_csv)
    landscapes, skipped = {}, []
    for cell in cells.itertuples():
        params = histories.get(cell.cell_id, {}).get("final_params")
        if params is None or not all(torch.isfinite(t).all() for t in params.values()):
            skipped.append(cell.cell_id)
            continue
        landscapes[cell.cell_id] = modular_landscape(
            study, params, splits[int(cell.data_seed)], int(cell.model_seed), span, points, rows, seed,
            activation=cell.activation, normalization=normalization)
        stats = landscapes[cell.cell_id]["stats"]
        log.info("%s: train loss range %.3g roughness %.3g; val loss range %.3g roughness %.3g", cell.cell_id,
                 stats["train_loss"]["range"], stats["train_loss"]["roughness"],
                 stats["val_loss"]["range"], stats["val_loss"]["roughness"])
    if not landscapes:
        raise ValueError(f"no cell of {cells_csv} has finite final_params in its history: train the study "
                         f"with save_weights: true")
    if skipped:
        log.warning("%d cells without finite final parameters left out: %s", len(skipped), ", ".join(skipped))
    io.save_torch(landscapes, out_path)
