"""How a candidate's BatchNorm statistics are taken when it is scored (one policy per scorer).

* `FixedBN`: the supernet's running statistics, as trained (the default).
* `RecalibratedBN`: re-estimated per candidate on K fixed train batches (cumulative
  average), restored afterwards; a candidate's block inputs then depend on its whole
  mask, so no work is shared between candidates.
* `FoldedBN`: every backbone BN folded into its convolution, run channels_last: faster,
  rounded differently from the plain network (losses agree to ~1e-7), so opt-in.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

from bench.models.resnet import SlotResNet
from bench.util.errors import BenchError

__all__ = ["BNPolicy", "FixedBN", "FoldedBN", "RecalibratedBN", "bn_policy", "fold_batchnorm"]

Mask = tuple[int, ...]


class BNPolicy:
    """The fixed policy, and the interface of the others: which network runs a candidate,
    what is done around its scoring and whether candidates may share block inputs."""

    shares_work = True

    def __init__(self, net: SlotResNet) -> None:
        self.net = net

    @property
    def runner(self) -> SlotResNet:
        """The network whose forward scores the candidate."""
        return self.net

    def set_mask(self, mask: Mask) -> None:
        self.net.set_mask(mask)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as the runner wants it."""
        return x

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        """Around one candidate's scoring (after its mask is set)."""
        yield


FixedBN = BNPolicy


class RecalibratedBN(BNPolicy):
    """BN statistics re-estimated per candidate on fixed batches, restored afterwards."""

    shares_work = False

    def __init__(self, net: SlotResNet, batches: Sequence[torch.Tensor]) -> None:
        super().__init__(net)
        self.batches = list(batches)
        self._tracked = [m for m in net.modules() if isinstance(m, _BatchNorm)]
        self._tracked = [m for m in self._tracked if m.track_running_stats]
        self._saved = [
            (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(),
             m.momentum)
            for m in self._tracked
        ]  # fmt: skip

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        try:
            self._recalibrate()
            yield
        finally:
            self._restore()

    def _recalibrate(self) -> None:
        for m in self._tracked:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the K batches
        self.net.train()
        with torch.no_grad():
            for xb in self.batches:
                self.net(xb)
        self.net.eval()

    def _restore(self) -> None:
        for m, (mean, var, count, momentum) in zip(self._tracked, self._saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
            m.momentum = momentum


class FoldedBN(BNPolicy):
    """A BN-folded channels_last copy runs the candidates (the supernet is kept as it is)."""

    def __init__(self, net: SlotResNet) -> None:
        super().__init__(net)
        self.folded = fold_batchnorm(net).to(memory_format=torch.channels_last)

    @property
    def runner(self) -> SlotResNet:
        return self.folded

    def set_mask(self, mask: Mask) -> None:
        self.net.set_mask(mask)
        self.folded.set_mask(mask)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def bn_policy(
    net: SlotResNet,
    recalib_batches: Sequence[torch.Tensor] | None = None,
    fast: bool = False,
) -> BNPolicy:
    """The policy the scorer's options ask for; recalibration and folding exclude each other
    (folding bakes in fixed statistics)."""
    if fast and recalib_batches:
        raise BenchError("fast evaluation folds fixed BN statistics: not with recalibration")
    if recalib_batches:
        return RecalibratedBN(net, recalib_batches)
    return FoldedBN(net) if fast else FixedBN(net)


def fold_batchnorm(net: SlotResNet) -> SlotResNet:
    """A copy of `net` (eval mode) with each backbone BatchNorm folded into its convolution:
    the stem, every block's convN -> bnN and every downsample (conv, bn). SAMs are kept."""
    net = copy.deepcopy(net).eval()
    in_sams = {id(m) for sam in net.sam_modules() for m in sam.modules()}
    for module in list(net.modules()):
        if id(module) in in_sams:
            continue
        for i in (1, 2, 3):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(module, f"bn{i}", nn.Identity())
        if isinstance(module, nn.Sequential):
            for j in range(len(module) - 1):
                if isinstance(module[j], nn.Conv2d) and isinstance(module[j + 1], nn.BatchNorm2d):
                    module[j] = fuse_conv_bn_eval(module[j], module[j + 1])
                    module[j + 1] = nn.Identity()
    return net
