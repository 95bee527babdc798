"""DIANet's shared attention cell (Huang et al. 2020, "DIANet: Dense-and-Implicit Attention")."""

from __future__ import annotations

import torch
from torch import nn


def _bottleneck(channels: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4 * channels)
    )


class DIACell(nn.Module):
    """DIA: LSTM-like cell over the pooled features of consecutive blocks; gate x by h'.

    As the official code: EAN's forward_config_dia_fbresnet.py (search_imagent/imagenet_network/,
    small_cell lines 29-37, LSTMCell lines 39-77, the stage loop in Attention lines 98-125),
    with m = gap(x) (B, C) and the stage's state (h, c), zeros before its first active block:
        gates = f_ih(m) + f_hh(h),  f = Linear(C, C//r) -> ReLU -> Linear(C//r, 4C)
        i, f, g, o = gates.chunk(4)   (this order: official `i, f, c, o` at line 64)
        i, f, o = sigmoid(.); g = tanh(g)
        c' = f * c + i * g;  h' = o * sigmoid(c')   (sigmoid, not an LSTM's tanh; line 71)
        out = x * h'; (h', c') carried to the stage's next active block (lines 106-122).
    The official reduction is r = 20 (line 33); the official dropout (line 74) only feeds a
    second LSTM layer, which the one-layer cell does not have, so it changes nothing.
    The recurrent (h, c) lives in the caller's per-stage `state` dict under `key`, so it
    flows from block to block whether the stage shares one cell or each block has its own.
    Before this followed the official gate order it chunked `i, f, o, g`: a DIA checkpoint
    saved then loads by name but computes differently (the last two C-row blocks of f_ih[2]
    and f_hh[2], weight and bias, are swapped relative to now).
    """

    stateful = True

    def __init__(self, channels: int, reduction: int = 4, key: str = "dia") -> None:
        super().__init__()
        self.channels = channels
        self.key = key
        hidden = max(channels // reduction, 1)
        self.f_ih = _bottleneck(channels, hidden)
        self.f_hh = _bottleneck(channels, hidden)

    def reset_parameters(self) -> None:
        """Re-initialise (the ResNet calls this after its own conv/BN init pass)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """`state=None` runs one step from zeros without carrying anything."""
        b, c = x.shape[:2]
        if c != self.channels:
            raise ValueError(f"DIA cell built for {self.channels} channels got {c}")
        inp = x.mean((2, 3))  # global average pool; deterministic backward on CUDA too
        prev = None if state is None else state.get(self.key)
        if prev is None:
            h = cell = inp.new_zeros(b, c)
        else:
            h, cell = prev
            if h.shape != (b, c):
                raise ValueError(
                    f"DIA state under {self.key!r} has shape {tuple(h.shape)}, "
                    f"expected {(b, c)}: state dicts must be per stage"
                )
        i, f, g, o = (self.f_ih(inp) + self.f_hh(h)).chunk(4, dim=1)  # official order
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        # DIANet's cell uses sigmoid(c') (not tanh) so h' is directly a (0, 1) attention map.
        h = torch.sigmoid(o) * torch.sigmoid(cell)
        if state is not None:
            state[self.key] = (h, cell)
        return x * h.view(b, c, 1, 1)
