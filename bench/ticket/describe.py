"""Human-readable ticket reports: the mask drawn per stage and its cost vs controls."""

from __future__ import annotations

from bench.cost.measure import Cost
from bench.cost.table import measure_models
from bench.models.resnet import ModelConfig, SlotResNet
from bench.models.slots import build_ticket_model, model_config
from bench.ticket.schema import Ticket

ON, OFF = "■", "·"


def draw_mask(ticket: Ticket) -> list[str]:
    """One line per stage: the stage name, its blocks as filled/empty marks, kept/total."""
    lines, i = [], 0
    stages = [s.rsplit(".", 1)[0] for s in ticket.slots]
    names = list(dict.fromkeys(stages))
    width = max(ticket.stage_sizes)
    for name, n in zip(names, ticket.stage_sizes):
        bits = ticket.mask[i : i + n]
        marks = " ".join(ON if b else OFF for b in bits)
        lines.append(f"  {name:<7} {marks:<{2 * width}} {sum(bits):>2}/{n}")
        i += n
    return lines


def provenance_line(ticket: Ticket) -> str:
    p = ticket.provenance
    kind = p.get("kind")
    if kind == "published":
        return f"published: {p['citation']} ({p['source']})"
    if kind == "searched":
        return (
            f"searched on {p['dataset']} with {p['strategy']} (seed {p['seed']}, "
            f"config {p['config_hash']}), run {p['run']}"
        )
    extra = f", density {p['density']}" if "density" in p else ""
    return f"baseline {p['baseline']} (seed {p['seed']}{extra})"


def ticket_costs(
    ticket: Ticket,
    *,
    device: str = "cpu",
    batch: int = 1,
    input_size: int | None = None,
    latency: bool = True,
    repeats: int = 7,
    tolerance: float = 0.02,
    time_cap_s: float = 20.0,
) -> dict[str, Cost]:
    """Cost of the plain backbone, the ticket and the full-SAM network, timed in one
    interleaved session (bench.cost.table.measure_session): at least `repeats` rounds, then
    until every median is known within `tolerance` or `time_cap_s` has passed."""
    config = model_config(ticket)
    ticket_net = build_ticket_model(ticket)
    size = input_size or ticket_net.spec.input_size
    shape = (batch, 3, size, size)
    nets = {
        "none": SlotResNet(ModelConfig(config.backbone)),
        "ticket": ticket_net,
        "full": SlotResNet(config),
    }
    timing = {"min_rounds": repeats, "tolerance": tolerance, "time_cap_s": time_cap_s}
    costs, _ = measure_models(nets, shape, device=device, latency=latency, **timing)
    return costs


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.3f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def cost_table(costs: dict[str, Cost]) -> list[str]:
    """Rows for none / ticket / full with changes relative to the plain backbone."""
    base = costs["none"]
    head = f"  {'network':<8} {'params':>9} {'SAM params':>11} {'GMACs':>7} {'latency':>10}"
    rows = [head]
    for name, c in costs.items():
        lat = f"{c.latency_ms:8.2f}ms" if c.latency_ms is not None else f"{'-':>10}"
        rows.append(
            f"  {name:<8} {_fmt_params(c.params_total):>9} {_fmt_params(c.params_sams):>11} "
            f"{c.gmacs:7.3f} {lat}"
        )
    if costs["full"].latency_ms and base.latency_ms:
        t, f = (100 * (costs[k].latency_ms / base.latency_ms - 1) for k in ("ticket", "full"))
        rows.append(f"  SAM latency overhead vs none: ticket {t:+.1f}%, full {f:+.1f}%")
    flops = {k: costs[k].flops for k in ("ticket", "none", "full")}
    if all(flops.values()):  # two decimals: a SAM's share of a ResNet's FLOPs is often < 1%
        t, n = (100 * (1 - flops[k] / flops["full"]) for k in ("ticket", "none"))
        rows.append(f"  GFLOPs saved vs full: ticket {t:.2f}%, none {n:.2f}%")
    return rows


def describe_ticket(ticket: Ticket, costs: dict[str, Cost] | None = None) -> str:
    """The full `bench ticket show` text."""
    lines = [
        f"{ticket.name}  [{ticket.model_name}, SAM sharing: per {ticket.sharing}]",
        f"  checksum {ticket.checksum}",
        f"  {provenance_line(ticket)}",
        f"  mask {ticket.stages}   kept {ticket.kept}/{ticket.total} "
        f"(density {ticket.density:.3f})   EAN codes {ticket.ean_codes()}",
        *draw_mask(ticket),
    ]
    if costs:
        c = costs["ticket"]
        shape = "x".join(str(s) for s in c.input_shape or ())
        where = c.latency_device or "latency not measured"
        lines.append(
            f"  cost at input {shape}, {where}; latency: medians of one interleaved session"
        )
        lines.extend(cost_table(costs))
    return "\n".join(lines)
