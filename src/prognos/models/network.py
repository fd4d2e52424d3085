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

import torch
from torch import Tensor, nn

__all__ = ["SequenceNet", "deterministic", "torch_threads"]


class SequenceNet(nn.Module):
    """Mask-aware encoder (LSTM or causal CNN) + a shared layer + RUL and failure heads.

    The ReLUs are ``nn.ReLU`` modules, one per use (``acts``: one per conv block; ``act``: the
    shared layer's), not ``torch.relu`` calls: DeepLift (:mod:`prognos.models.attribution`)
    hooks each nonlinearity module to rescale its gradient, and a module used twice in one
    forward would overwrite its own saved activations. Past them the forward is linear in the
    input given the lengths (masking and mean by a fixed mask, padding, convolutions, residual
    adds, concatenations, dropout in eval), which is what makes DeepLift's terms complete.
    The modules hold no parameters: the state_dict keys are those of the ``torch.relu`` network.
    """

    def __init__(
        self,
        arch: Literal["lstm", "cnn"],
        n_channels: int,
        window: int,
        hidden: int,
        layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.arch = arch
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
            # Dilations 1, 2, 4, ... until the receptive field (kernel 3) covers the window, and
            # at least ``layers`` blocks.
            d, field, n_blocks = 1, 1, 0
            while field < window or n_blocks < layers:
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
        centre = x.sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True)
        x = torch.cat([x, (x - centre) * m, m], dim=2)
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
