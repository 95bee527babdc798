"""Supernet masks and materialized tickets: weight inheritance by parameter name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from bench.models.resnet import ModelConfig, SlotResNet
from bench.models.sams import sam_defaults
from bench.ticket.schema import Ticket
from bench.util.errors import BenchError


def model_config(ticket: Ticket) -> ModelConfig:
    """The structure a ticket applies to (backbone, SAM and its arguments, sharing)."""
    return ModelConfig(ticket.backbone, ticket.sam, dict(ticket.sam_args), ticket.sharing)


def build_ticket_model(ticket: Ticket, **kwargs) -> SlotResNet:
    """The materialized ticket network: SAM modules exist only at the ticket's 1 slots."""
    return SlotResNet(model_config(ticket), built=ticket.mask, **kwargs)


def build_supernet(ticket_or_config: Ticket | ModelConfig, **kwargs) -> SlotResNet:
    """Every slot built; the mask can then change between forward passes."""
    config = (
        model_config(ticket_or_config) if isinstance(ticket_or_config, Ticket) else ticket_or_config
    )
    return SlotResNet(config, **kwargs)


def inherit_weights(net: SlotResNet, source: Mapping[str, torch.Tensor]) -> None:
    """Load every tensor of `net` from `source` by name (a supernet holds a superset)."""
    own = net.state_dict()
    missing = [k for k in own if k not in source]
    if missing:
        raise BenchError(
            f"weights lack {len(missing)} tensors of {net.config.name} (first: {missing[0]})"
        )
    net.load_state_dict({k: source[k] for k in own}, strict=True)


def materialize(supernet: SlotResNet, mask: Sequence[int]) -> SlotResNet:
    """A new network with SAMs only where `mask` is 1, weights inherited from `supernet`."""
    net = SlotResNet(supernet.config, built=mask, **supernet.build_kwargs)
    inherit_weights(net, supernet.state_dict())
    return net.to(next(supernet.parameters()).device).train(supernet.training)


def _resolved(sam: str | None, args: Mapping) -> dict:
    return {} if sam is None else {**sam_defaults(sam), **args}


def check_compatible(model: SlotResNet, ticket: Ticket) -> None:
    """Fail clearly when a ticket was made for another network (no silent remapping)."""
    cfg = model.config
    for field, mine, theirs in (
        ("backbone", cfg.backbone, ticket.backbone),
        ("sam", cfg.sam, ticket.sam),
        ("sharing", cfg.sharing, ticket.sharing),
        ("sam_args", _resolved(cfg.sam, cfg.sam_args), _resolved(ticket.sam, ticket.sam_args)),
    ):
        if mine != theirs:
            raise BenchError(f"ticket {ticket.name}: {field} is {theirs!r}, model has {mine!r}")
    if tuple(ticket.slots) != model.slot_ids:
        raise BenchError(f"ticket {ticket.name}: slot ids do not match {cfg.name}")
