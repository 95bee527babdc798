"""`bench ticket show|validate|make`, and turning a mask spec or --ticket into a Ticket (which
`bench train` and `bench eval` share)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.cli import args as cliargs
from bench.util.errors import BenchError

HELP = "Show, validate or make ticket files."
EXAMPLE = "bench ticket show resnet50-sge-stage-ean"
SHOW_HELP = (
    "Draw a ticket's mask per stage and measure its cost against the full-SAM and the "
    "SAM-free network: parameters, GMACs (SAM operations included, bench/cost/flops.py) and "
    "median CPU/GPU latency at the stated input size, timed side by side."
)
MAKE_HELP = (
    "Write a ticket file: baseline masks (full, none, random:DENSITY with --seed) or a "
    "published mask given as stage bits ('100|1011|010011|011') or EAN codes (ean:4,11,19,3) "
    "with its --citation and --source."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="ticket_command", required=True, metavar="ACTION")
    example = "bench ticket show tickets/resnet50-sge-stage-ean.json --batch 1"
    s = cliargs.command_parser(sub, "show", SHOW_HELP, example, summary="mask and costs")
    s.add_argument("tickets", nargs="*", help="ticket files or names in tickets/ (default: all)")
    s.add_argument(
        "--device", type=cliargs.device, default="auto", help="where latency is timed: "
        + cliargs.DEVICE_HELP,
    )  # fmt: skip
    s.add_argument("--batch", type=cliargs.positive_int, default=1, help="batch of the input")
    s.add_argument(
        "--input-size", type=cliargs.positive_int, default=None, help="side (default: the model's)"
    )
    s.add_argument(
        "--repeats",
        type=cliargs.positive_int,
        default=7,
        help="least timed rounds; then until every median is within 2%% (20 s at most)",
    )
    s.add_argument("--no-latency", action="store_true", help="skip timing")
    s.add_argument("--no-cost", action="store_true", help="only draw the mask")
    s.set_defaults(func=show)
    v = cliargs.command_parser(
        sub,
        "validate",
        "Check ticket files (exit 2 with the bad field named).",
        "bench ticket validate tickets/*.json",
    )
    v.add_argument("tickets", nargs="*", help="ticket files (default: all shipped)")
    v.set_defaults(func=validate)
    _add_make(sub)


def _add_make(sub: argparse._SubParsersAction) -> None:
    example = "bench ticket make resnet164-se --mask random:0.5 --seed 1 -o tickets/r164.json"
    m = cliargs.command_parser(sub, "make", MAKE_HELP, example, summary="write a ticket file")
    m.add_argument(
        "model", type=cliargs.model, metavar="MODEL", help="<backbone>-<sam>, e.g. resnet50-se"
    )
    m.add_argument("--mask", type=cliargs.mask_spec, required=True, help=cliargs.MASK_FORMS)
    cliargs.add_sam_flags(m)
    m.add_argument("--seed", type=cliargs.seed, default=0, help="seed of a random mask")
    m.add_argument("--name", default=None, help="ticket name (default from model and mask)")
    m.add_argument("--citation", default=None, help="for a published mask: the paper")
    m.add_argument("--source", default=None, help="for a published mask: file or table")
    m.add_argument(
        "-o", "--output", type=Path, default=None, help="where (default: tickets/NAME.json)"
    )
    m.set_defaults(func=make)


def run(args: argparse.Namespace) -> None:
    args.func(args)


def show(args: argparse.Namespace) -> None:
    if not args.no_cost and not args.no_latency:
        cliargs.check_device(args.device)
    from bench.engine.device import select_device
    from bench.ticket.describe import describe_ticket, ticket_costs
    from bench.ticket.schema import load_ticket

    paths = cliargs.resolve_ticket_paths(args.tickets)
    tickets = [load_ticket(p) for p in paths]  # validate all before measuring any
    for i, ticket in enumerate(tickets):
        costs = None
        if not args.no_cost:
            costs = ticket_costs(
                ticket,
                device=str(select_device(args.device)),
                batch=args.batch,
                input_size=args.input_size,
                latency=not args.no_latency,
                repeats=args.repeats,
            )
        print(("\n" if i else "") + describe_ticket(ticket, costs))


def validate(args: argparse.Namespace) -> None:
    from bench.ticket.schema import load_ticket

    for path in cliargs.resolve_ticket_paths(args.tickets):
        t = load_ticket(path)
        print(f"ok  {path}  {t.model_name}  {t.stages}  {t.checksum}")


def parse_mask_spec(spec: str, slots: Sequence[str], seed: int) -> tuple[tuple[int, ...], dict]:
    """full | none | random:DENSITY | bits "100|1011|..." | ean:7,15,63,7 -> (mask, info);
    info is the provenance of a baseline, empty for an explicit mask."""
    from bench.ticket.schema import baseline_mask, ean_to_mask, stage_sizes, stages_to_mask

    try:  # the form (a caller may not have parsed it with argparse)
        cliargs.mask_spec(spec)
    except argparse.ArgumentTypeError as e:
        raise BenchError(f"--mask {e}") from None
    sizes = stage_sizes(slots)
    if spec in ("full", "none"):
        return baseline_mask(spec, len(slots)), {"kind": "baseline", "baseline": spec, "seed": seed}
    if spec.startswith("random:"):
        density = float(spec.split(":", 1)[1])
        mask = baseline_mask("random", len(slots), density=density, seed=seed)
        return mask, {"kind": "baseline", "baseline": "random", "seed": seed, "density": density}
    if spec.startswith("ean:"):
        return ean_to_mask([int(c) for c in spec[4:].split(",")], sizes), {}
    return stages_to_mask(spec, sizes), {}


def make(args: argparse.Namespace) -> None:
    from bench.ticket.schema import make_ticket, model_slots

    backbone, sam = args.model.split("-", 1)
    mask, provenance = parse_mask_spec(args.mask, model_slots(backbone), args.seed)
    if not provenance:  # an explicit mask is only shipped with the work it comes from
        if not (args.citation and args.source):
            raise BenchError(
                "--mask with explicit bits needs --citation and --source (published tickets); "
                "searched tickets are written by `bench search`"
            )
        provenance = {"kind": "published", "citation": args.citation, "source": args.source}
    sam_args = cliargs.parse_key_values(args.sam_arg, "--sam-arg")
    name = args.name or f"{args.model}-{args.sharing}-{args.mask.split(':')[0]}"
    ticket = make_ticket(
        name, backbone, sam, mask, provenance, sam_args=sam_args, sharing=args.sharing
    )
    out = args.output or cliargs.TICKET_DIR / f"{name}.json"
    ticket.save(out)
    print(f"wrote {out}  {ticket.stages}  {ticket.checksum}")


def ticket_for(args: argparse.Namespace, seed: int):
    """The ticket named by --ticket, or the control made from --mask for this seed."""
    from bench.ticket.schema import load_ticket, make_ticket, model_slots

    if args.ticket is not None:
        ticket = load_ticket(cliargs.ticket_file(args.ticket))
        if ticket.model_name != args.model:
            raise BenchError(f"{args.ticket}: ticket is for {ticket.model_name}, not {args.model}")
        return ticket
    backbone, sam = args.model.split("-", 1)
    mask, prov = parse_mask_spec(args.mask, model_slots(backbone), seed)
    suffix = args.mask.replace(":", "")
    if prov["baseline"] == "random":
        suffix += f"-s{seed}"
    return make_ticket(
        f"{args.model}-{args.sharing}-{suffix}", backbone, sam, mask, prov, sharing=args.sharing
    )
