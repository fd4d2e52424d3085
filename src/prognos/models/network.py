"""The sequence member's network and the torch settings it runs under.

A mask-aware encoder (causal dilated CNN or LSTM) over the last W normalised channel vectors,
a shared layer and two heads (RUL, failure logit). Kept apart from the estimator
(:mod:`prognos.models.sequence`) so that attribution (:mod:`prognos.models.attribution`) and the
estimator share one definition. Its nonlinearities are ``nn.ReLU`` modules, one per use, so
DeepLift can hook them; they hold no parameters, so state_dicts saved before are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from prognos.models.base import ModelInput

__all__ = [
    "SequenceNet",
    "checked_sequences",
    "deterministic",
    "pool_steps",
    "torch_device",
    "torch_threads",
]


class SequenceNet(nn.Module):
    """Mask-aware encoder (LSTM or causal CNN) + a shared layer + RUL and failure heads.

    The ReLUs are ``nn.ReLU`` modules, one per use (``acts``: one per conv block; ``act``: the
    shared layer's), not ``torch.relu`` calls: DeepLift (:mod:`prognos.models.attribution`)
    hooks each nonlinearity module to rescale its gradient, and a module used twice in one
    forward would overwrite its own saved activations. Past them the forward is linear in the
    input given the lengths (masking and mean by a fixed mask, padding, convolutions, residual
    adds, concatenations, dropout in eval), which is what makes DeepLift's terms complete.
    The modules hold no parameters: the state_dict keys are those of the ``torch.relu`` network.

    ``pool`` > 1 averages the masked input over groups of ``pool`` positions first
    (:func:`pool_steps`), so the encoder sees ceil(W / pool) steps covering all W readings: the
    long trend at the compute of a W / pool window. Group means divide by counts fixed by the
    lengths, so the forward stays linear past the ReLUs; no parameters, and pool = 1 runs the
    unpooled network operation for operation.
    """

    def __init__(
        self,
        arch: Literal["lstm", "cnn"],
        n_channels: int,
        window: int,
        hidden: int,
        layers: int,
        dropout: float,
        pool: int = 1,
    ) -> None:
        super().__init__()
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        self.arch = arch
        self.pool = pool
        steps = -(-window // pool)  # positions the encoder sees
        inputs = 2 * n_channels + 1  # levels, levels minus their window mean, the mask
        self.lstm: nn.LSTM | None = None
        self.convs = nn.ModuleList()
        self.acts = nn.ModuleList()  # one nn.ReLU per conv block
        self.dilations: list[int] = []
        if arch == "lstm":
            self.lstm = nn.LSTM(
                inputs,
                hidden,
                num_layers=layers,
                batch_first=True,
                dropout=dropout if layers > 1 else 0.0,
            )
            encoded = hidden
        else:
            # Dilations 1, 2, 4, ... until the receptive field (kernel 3) covers the (pooled)
            # window, and at least ``layers`` blocks.
            d, field, n_blocks = 1, 1, 0
            while field < steps or n_blocks < layers:
                self.dilations.append(d)
                width = inputs if n_blocks == 0 else hidden
                self.convs.append(nn.Conv1d(width, hidden, 3, dilation=d))
                self.acts.append(nn.ReLU())
                field += 2 * d
                d *= 2
                n_blocks += 1
            encoded = 2 * hidden  # last position + masked mean over real positions
        self.drop = nn.Dropout(dropout)
        self.act = nn.ReLU()
        self.shared = nn.Linear(encoded, hidden)
        self.rul_head = nn.Linear(hidden, 1)
        self.fail_head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        window = x.shape[1]
        positions = torch.arange(window, device=x.device)
        mask = (positions[None, :] >= (window - lengths)[:, None]).to(x.dtype)  # (B, W)
        m = mask[..., None]
        x = x * m  # padded positions become exact zeros, whatever they held
        if self.pool == 1:
            centre = x.sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True)
            x = torch.cat([x, (x - centre) * m, m], dim=2)
        else:
            x, mask = pool_steps(x, mask, self.pool)
            m = mask[..., None]
            # Weighted by the real fraction: the mean over the real readings, as unpooled; the
            # centred levels are zeroed only where a group holds no reading.
            centre = (x * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True)
            present = (m > 0).to(x.dtype)
            x = torch.cat([x, (x - centre) * present, m], dim=2)
        if self.lstm is not None:
            out, _ = self.lstm(x)
            encoded = out[:, -1]
        else:
            h = x.transpose(1, 2)  # (B, C, W)
            blocks = zip(self.convs, self.acts, self.dilations, strict=True)
            for i, (conv, act, d) in enumerate(blocks):
                y = act(conv(nn.functional.pad(h, (2 * d, 0))))  # causal: pad the past
                h = y if i == 0 else h + y
            real = mask[:, None, :]
            pooled = (h * real).sum(dim=2) / real.sum(dim=2)
            encoded = torch.cat([h[:, :, -1], pooled], dim=1)
        z = self.drop(self.act(self.shared(self.drop(encoded))))
        return self.rul_head(z).squeeze(1), self.fail_head(z).squeeze(1)


def pool_steps(x: Tensor, mask: Tensor, pool: int) -> tuple[Tensor, Tensor]:
    """Average ``x`` (B, W, C), already zero at padded positions, over non-overlapping groups of
    ``pool`` positions, the newest group ending at the last reading; the oldest group is short
    when ``pool`` does not divide W (treated as padded at the front).

    Returns (B, ceil(W / pool), C) means over each group's *real* positions (0 where it has
    none), so a partly padded group keeps the level of its readings, and the mask (B, W) pooled
    to each group's fraction of real positions. Both depend on the input only linearly for given
    lengths (the counts come from the mask), so padding still changes nothing and DeepLift stays
    complete.
    """
    batch, window, channels = x.shape
    groups = -(-window // pool)
    front = groups * pool - window
    if front:
        x = nn.functional.pad(x, (0, 0, front, 0))
        mask = nn.functional.pad(mask, (front, 0))
    sums = x.reshape(batch, groups, pool, channels).sum(dim=2)
    counts = mask.reshape(batch, groups, pool).sum(dim=2)
    return sums / counts.clamp(min=1.0)[..., None], counts / pool


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (None: leave as is), then restore the previous count."""
    previous = torch.get_num_threads()
    if n is not None and n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


@contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic algorithms (warn only) for the duration, restoring the previous flags."""
    was, was_warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        if enabled:
            torch.use_deterministic_algorithms(was, warn_only=was_warn)


def torch_device(name: str) -> torch.device:
    """The device ``name`` asks for ("auto": CUDA when present, else the CPU), refused with a
    ``ValueError`` when it is not a device or is CUDA on a machine without it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device {name!r} is not a torch device") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def checked_sequences(X: ModelInput) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """``X``'s sequences as contiguous float32 and lengths as int64, after checking shapes,
    lengths in 1..window and finiteness (a clear error instead of a wrong network input)."""
    seq = np.asarray(X.sequences)
    lengths = np.asarray(X.lengths)
    if seq.ndim != 3:
        raise ValueError(f"sequences must be 3-D (rows, window, channels), got shape {seq.shape}")
    rows, window, _ = seq.shape
    if lengths.shape != (rows,):
        raise ValueError(f"lengths must have shape ({rows},), got {lengths.shape}")
    if rows and (lengths.min() < 1 or lengths.max() > window):
        raise ValueError(
            f"lengths must be in 1..window ({window}), got {lengths.min()}..{lengths.max()}"
        )
    seq = np.ascontiguousarray(seq, dtype=np.float32)
    if not np.isfinite(seq).all():
        raise ValueError("sequences contain NaN or infinite values")
    return seq, lengths.astype(np.int64, copy=False)
