"""MNIST data and model, built exactly as the report's public code builds them.

Reference: code/mnist/mnist_run.py of isadrtdinov/grokking-reproduction (DESIGN section 5).

- Data: ``torchvision.datasets.MNIST(root, download=True)``; pixels via ``ToTensor()`` only, i.e.
  ``uint8 / 255`` in the training dtype, no normalisation. After seeding torch, numpy and random with
  the data seed, the training set is ``np.random.choice(range(60000), 1000, replace=False)`` (the first
  numpy draw); the 10,000 test images are the validation set.
- Model: MLP 784-200-200-10 with ReLU; "encoder" = the first two Linear layers, "decoder" = the last.
  Built after seeding with the model seed, in the training dtype (the public code sets the default
  dtype to float64 before building, so the default init draws float64 numbers), then every parameter,
  biases included, is multiplied by ``init_scale`` (9).

A dataset file holds the subset's images and labels as uint8 / int64 (about 9 MB), written once and
read by every shard, so every cell trains on the same images.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from grokking import ensemble
from grokking.data import seeded
from grokking.models import make_activation

N_PIXELS = 28 * 28
N_CLASSES = 10
N_TRAIN_TOTAL = 60_000
N_TEST_TOTAL = 10_000


class MnistDataError(RuntimeError):
    """The MNIST files are missing, corrupt or cannot be fetched; the message says where they belong."""


def _resources() -> list[tuple[str, str]]:
    """(file name, md5) of the four gzipped idx files, as torchvision knows them."""
    from torchvision.datasets import MNIST

    return list(MNIST.resources)


def raw_folder(root: str | Path) -> Path:
    """Where torchvision expects (and downloads) the idx files."""
    return Path(root) / "MNIST" / "raw"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected(root: str | Path) -> str:
    names = ", ".join(name for name, _ in _resources())
    return (f"MNIST is expected in {raw_folder(root)}/ ({names}, or the same files unpacked); "
            f"set data.mnist_root in the config to the folder that holds MNIST/raw/")


def _check_archives(root: str | Path) -> bool:
    """True when all four .gz files are present and intact; a damaged one is an error, not a re-download."""
    folder = raw_folder(root)
    present = 0
    for name, md5 in _resources():
        path = folder / name
        if path.exists():
            if _md5(path) != md5:
                raise MnistDataError(f"corrupt MNIST file {path} (md5 differs from torchvision's {md5}); "
                                     f"replace or delete it. {_expected(root)}")
            present += 1
    return present == len(_resources())


def _unpacked(root: str | Path) -> bool:
    folder = raw_folder(root)
    return all((folder / Path(name).stem).exists() for name, _ in _resources())


def _torchvision_mnist(root: str | Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    dataset = MNIST(root=str(root), train=train, download=download)
    return dataset.data, dataset.targets


def load_mnist(root: str | Path, download: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The 60,000 training and 10,000 test images (uint8 [N, 28, 28]) and labels, via torchvision.

    torchvision reads unpacked idx files and unpacks verified .gz files next to them. When ``root``
    holds only the .gz files (a shared, possibly read-only copy), they are unpacked in a temporary
    copy instead, so the configured folder is never written to; only a download writes there.
    """
    archives = _check_archives(root)
    try:
        if archives and not _unpacked(root):
            with tempfile.TemporaryDirectory(prefix="mnist-") as scratch:
                folder = raw_folder(scratch)
                folder.mkdir(parents=True)
                for name, _ in _resources():
                    shutil.copyfile(raw_folder(root) / name, folder / name)
                splits = {split: _torchvision_mnist(scratch, split == "train", True)
                          for split in ("train", "test")}
        else:
            splits = {split: _torchvision_mnist(root, split == "train", download)
                      for split in ("train", "test")}
    except MnistDataError:
        raise
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ValueError...
        cause = " ".join(str(error).split())[:300]
        raise MnistDataError(f"could not load MNIST ({type(error).__name__}: {cause}). "
                             f"{_expected(root)}") from None
    for split, n in (("train", N_TRAIN_TOTAL), ("test", N_TEST_TOTAL)):
        images, labels = splits[split]
        if tuple(images.shape) != (n, 28, 28) or images.dtype != torch.uint8 or len(labels) != n:
            raise MnistDataError(f"MNIST {split} set has images {tuple(images.shape)} {images.dtype} and "
                                 f"{len(labels)} labels, not {n} 28x28 uint8 images: corrupt files? "
                                 f"{_expected(root)}")
        if int(labels.min()) < 0 or int(labels.max()) >= N_CLASSES:
            raise MnistDataError(f"MNIST {split} labels outside 0..9: corrupt files? {_expected(root)}")
    return splits


def subset_indices(data_seed: int, size: int, total: int = N_TRAIN_TOTAL) -> np.ndarray:
    """The report's training subset: the first numpy draw after seeding everything with the seed."""
    with seeded(int(data_seed)):
        return np.random.choice(range(total), size, replace=False)


@dataclass(frozen=True)
class MnistData:
    """One subset of MNIST, stored compactly; ``pixels`` turns images into the training dtype."""

    data_seed: int
    indices: torch.Tensor  # [n_train] long, positions in the 60,000 training images
    train_images: torch.Tensor  # [n_train, 784] uint8
    train_labels: torch.Tensor  # [n_train] long
    val_images: torch.Tensor  # [10000, 784] uint8, the test set
    val_labels: torch.Tensor  # [10000] long

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "MnistData":
        return cls(**values)


def prepare_mnist(root: str | Path, data_seed: int, subset_size: int, download: bool = True) -> MnistData:
    """Load MNIST and draw the report's training subset for ``data_seed``."""
    splits = load_mnist(root, download)
    images, labels = splits["train"]
    indices = torch.as_tensor(subset_indices(data_seed, subset_size, len(images)), dtype=torch.long)
    val_images, val_labels = splits["test"]
    return MnistData(
        data_seed=int(data_seed),
        indices=indices,
        train_images=images[indices].reshape(-1, N_PIXELS).clone(),
        train_labels=labels[indices].long().clone(),
        val_images=val_images.reshape(-1, N_PIXELS).clone(),
        val_labels=val_labels.long().clone(),
    )


def pixels(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``ToTensor()``'s arithmetic: uint8 -> dtype, divided by 255 (no normalisation)."""
    return images.to(dtype=dtype).div(255)


# ----------------------------------------------------------------------------- batch order
def batches(n: int, batch_size: int, seed: int, start_step: int = 0) -> Iterator[torch.Tensor]:
    """Index batches of steps start_step + 1, start_step + 2, ...: a fresh shuffle every epoch.

    One ``torch.Generator`` seeded with ``seed`` draws ``randperm(n)`` per epoch (what a
    ``DataLoader(shuffle=True)`` does); the last batch of an epoch is smaller when batch_size does
    not divide n. The order is a pure function of (n, batch_size, seed, step), so a continuation
    replays the permutations of past epochs (microseconds each) instead of restoring a generator.
    """
    generator = torch.Generator().manual_seed(int(seed))
    per_epoch = -(-n // batch_size)
    epoch, offset = divmod(start_step, per_epoch)
    for _ in range(epoch):
        torch.randperm(n, generator=generator)
    while True:
        order = torch.randperm(n, generator=generator)
        for b in range(offset, per_epoch):
            yield order[b * batch_size:(b + 1) * batch_size]
        offset = 0


# ----------------------------------------------------------------------------- model
class MnistMLP(nn.Module):
    """The report's MLP: encoder Linear-act-Linear-act, decoder Linear (logits)."""

    def __init__(self, hidden: int = 200, activation: str = "relu", dtype: torch.dtype = torch.float64):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(N_PIXELS, hidden, dtype=dtype),
            make_activation(activation),
            nn.Linear(hidden, hidden, dtype=dtype),
            make_activation(activation),
        )
        self.decoder = nn.Linear(hidden, N_CLASSES, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, 784] -> [n, 10]
        return self.decoder(self.encoder(x.flatten(1)))


def build_mnist_model(study: dict, activation: str, model_seed: int, dtype: torch.dtype) -> MnistMLP:
    """The reference model of one cell: seeded init in ``dtype``, every parameter times init_scale."""
    with seeded(int(model_seed)):
        model = MnistMLP(study["hidden"], activation, dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(study["init_scale"])
    return model


def mnist_architecture(activation: str) -> ensemble.Architecture:
    """The MLP as stacked layers; optimizer groups as in the report (encoder, decoder)."""
    return ensemble.Architecture(
        layers=(
            ensemble.Layer("w0", "b0", activation),
            ensemble.Layer("w1", "b1", activation),
            ensemble.Layer("w2", "b2", None),
        ),
        groups={"encoder": ("w0", "b0", "w1", "b1"), "decoder": ("w2", "b2")},
    )


def stack_mnist_models(models: list[MnistMLP], dtype: torch.dtype, device: torch.device) -> ensemble.Params:
    """Copy reference MLPs into stacked tensors: weights [M, in, out], biases [M, 1, out]."""
    linears = [[m.encoder[0], m.encoder[2], m.decoder] for m in models]
    params: ensemble.Params = {}
    for i in range(3):
        params[f"w{i}"] = torch.stack([ls[i].weight.detach().T for ls in linears])
        params[f"b{i}"] = torch.stack([ls[i].bias.detach()[None, :] for ls in linears])
    return {k: v.to(device=device, dtype=dtype).contiguous() for k, v in params.items()}
