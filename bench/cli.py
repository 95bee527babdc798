"""`bench`: the command-line front. Each command parses, calls one function, prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.cliargs import (
    TICKET_DIR,
    add_sam_flags,
    control_kinds,
    parse_key_values,
    resolve_ticket_paths,
)
from bench.errors import BenchError, RunsFailed


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def _parser(sub, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_text,
        description=f"{help_text}\n\nexample:\n  {example}",
        formatter_class=_Formatter,
    )


def parse_seeds(text: str) -> list[int]:
    """ "0,1,2" -> [0, 1, 2]."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r}: expected integers like 0,1,2"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds: expected at least one seed")
    return seeds


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command that runs something, so scripts can drive any of them."""
    g = p.add_argument_group("run options (shared by every command that runs something)")
    g.add_argument("--out", type=Path, default=Path("runs"), help="root of the run directories")
    g.add_argument("--data-root", type=Path, default=None, help="where the dataset lives")
    g.add_argument("--seeds", type=parse_seeds, default=[0], help="comma-separated seeds")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    g.add_argument("--iters", type=int, default=None, help="override the preset's iterations")


# ---- commands ----------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> None:
    from bench.models.resnet import BACKBONES, list_model_names
    from bench.models.sams import SAMS, describe_sam
    from bench.tickets import load_ticket

    pattern = args.pattern
    if args.what == "models":
        names = list_model_names(pattern)
        for name in names:
            print(name)
        print(
            f"# {len(names)} models: <backbone>[-<sam>]; backbones: {', '.join(BACKBONES.list())}",
            file=sys.stderr,
        )
    elif args.what == "sams":
        for name in SAMS.list(pattern):
            print(f"{name:<8} {describe_sam(name)}")
    else:
        for path in sorted(TICKET_DIR.glob(f"{pattern}.json")):
            t = load_ticket(path)
            print(
                f"{path.stem:<28} {t.model_name:<16} {t.sharing:<6} {t.stages:<24} "
                f"{t.kept}/{t.total}  {t.provenance['kind']}"
            )


def cmd_ticket_show(args: argparse.Namespace) -> None:
    from bench.describe import describe_ticket, ticket_costs
    from bench.tickets import load_ticket

    paths = resolve_ticket_paths(args.tickets)
    tickets = [load_ticket(p) for p in paths]  # validate all before measuring any
    for i, ticket in enumerate(tickets):
        costs = None
        if not args.no_cost:
            costs = ticket_costs(
                ticket,
                device=args.device,
                batch=args.batch,
                input_size=args.input_size,
                latency=not args.no_latency,
                repeats=args.repeats,
            )
        print(("\n" if i else "") + describe_ticket(ticket, costs))


def cmd_ticket_validate(args: argparse.Namespace) -> None:
    from bench.tickets import load_ticket

    for path in resolve_ticket_paths(args.tickets):
        t = load_ticket(path)
        print(f"ok  {path}  {t.model_name}  {t.stages}  {t.checksum}")


def parse_mask_spec(spec: str, slots: Sequence[str], seed: int) -> tuple[tuple[int, ...], dict]:
    """full | none | random:DENSITY | bits "100|1011|..." | ean:7,15,63,7 -> (mask, info)."""
    from bench.tickets import baseline_mask, ean_to_mask, stage_sizes, stages_to_mask

    sizes = stage_sizes(slots)
    n = len(slots)
    if spec in ("full", "none"):
        return baseline_mask(spec, n), {"kind": "baseline", "baseline": spec, "seed": seed}
    if spec.startswith("random:"):
        try:
            density = float(spec.split(":", 1)[1])
        except ValueError:
            raise BenchError(f"--mask {spec!r}: expected random:DENSITY, e.g. random:0.5") from None
        mask = baseline_mask("random", n, density=density, seed=seed)
        info = {"kind": "baseline", "baseline": "random", "seed": seed, "density": density}
        return mask, info
    if spec.startswith("ean:"):
        try:
            codes = [int(c) for c in spec[4:].split(",")]
        except ValueError:
            raise BenchError(f"--mask {spec!r}: expected ean:INT,INT,... per stage") from None
        return ean_to_mask(codes, sizes), {}
    return stages_to_mask(spec, sizes), {}


def cmd_ticket_make(args: argparse.Namespace) -> None:
    from bench.models.resnet import parse_model_name
    from bench.tickets import make_ticket, model_slots

    backbone, sam = parse_model_name(args.model)
    if sam is None:
        raise BenchError(f"model {args.model!r}: a ticket needs a SAM, e.g. {args.model}-se")
    mask, provenance = parse_mask_spec(args.mask, model_slots(backbone), args.seed)
    if not provenance:  # an explicit mask is only shipped with the work it comes from
        if not (args.citation and args.source):
            raise BenchError(
                "--mask with explicit bits needs --citation and --source (published tickets); "
                "searched tickets are written by `bench search`"
            )
        provenance = {"kind": "published", "citation": args.citation, "source": args.source}
    sam_args = parse_key_values(args.sam_arg, "--sam-arg")
    name = args.name or f"{args.model}-{args.sharing}-{args.mask.split(':')[0]}"
    ticket = make_ticket(
        name, backbone, sam, mask, provenance, sam_args=sam_args, sharing=args.sharing
    )
    out = args.output or TICKET_DIR / f"{name}.json"
    ticket.save(out)
    print(f"wrote {out}  {ticket.stages}  {ticket.checksum}")


def _ticket_for(args: argparse.Namespace, seed: int):
    """The ticket named by --ticket, or the baseline made from --mask for this seed."""
    from bench.models.resnet import parse_model_name
    from bench.tickets import load_ticket, make_ticket, model_slots

    backbone, sam = parse_model_name(args.model)
    if sam is None:
        raise BenchError(f"model {args.model!r}: name a SAM, e.g. {args.model}-se")
    if args.ticket is not None:
        ticket = load_ticket(resolve_ticket_paths([args.ticket])[0])
        if ticket.model_name != args.model:
            raise BenchError(f"{args.ticket}: ticket is for {ticket.model_name}, not {args.model}")
        return ticket
    mask, prov = parse_mask_spec(args.mask, model_slots(backbone), seed)
    if not prov:
        raise BenchError("--mask takes full, none or random:DENSITY; pass a mask via --ticket")
    suffix = args.mask.replace(":", "")
    if prov["baseline"] == "random":
        suffix += f"-s{seed}"
    return make_ticket(
        f"{args.model}-{args.sharing}-{suffix}", backbone, sam, mask, prov, sharing=args.sharing
    )


def _data_options(args: argparse.Namespace):
    from bench.classify import DataOptions

    return DataOptions(
        data_root=args.data_root,
        heldout=args.heldout,
        split_seed=args.split_seed,
        image_size=args.image_size,
        train_limit=getattr(args, "train_limit", None),
    )


def _controls(ticket, seed: int, spec: str | None) -> list:
    from bench.tickets import control_tickets

    return control_tickets(ticket, seed, control_kinds(spec))


def cmd_demo(args: argparse.Namespace) -> None:
    from bench.demo import run_demo

    print(run_demo(args.out, device=args.device, seed=args.seed))


def cmd_train(args: argparse.Namespace) -> None:
    from bench.classify import DEFAULT_PRESET, train_cell, with_seed
    from bench.engine import PRESETS, hparams_from_args
    from bench.engine.distributed import destroy_distributed, init_distributed, is_main_process

    if args.iters is not None:
        raise BenchError("bench train counts epochs: use --epochs, not --iters")
    from bench.pretrained import SCRATCH, file_init

    preset = DEFAULT_PRESET.get(args.dataset, "short") if args.preset == "auto" else args.preset
    base = hparams_from_args(args, PRESETS.get(preset))
    init = SCRATCH if args.init_from is None else file_init(args.init_from)
    init_distributed()
    records = []
    try:
        for seed in args.seeds:
            ticket = _ticket_for(args, seed)
            tickets = [ticket] + _controls(ticket, seed, args.controls)
            # A control equal to the ticket (e.g. random at density 1) is the same run.
            unique = {t.checksum: t for t in reversed(tickets)}
            for t in [t for t in tickets if unique.get(t.checksum) is t]:
                records.append(
                    train_cell(
                        t,
                        args.dataset,
                        with_seed(base, seed, args.epochs),
                        out_root=args.out,
                        data=_data_options(args),
                        device=args.device,
                        init=init,
                        mode=args.mode,
                        preset=preset,
                    )
                )
        main_rank = is_main_process()
    finally:
        destroy_distributed()
    if main_rank:
        from bench.classify import records_table

        print(records_table(records))
        print(f"records: {args.out / 'records' / 'classification' / args.dataset}")


def cmd_eval(args: argparse.Namespace) -> None:
    from bench.classify import eval_checkpoint

    ticket = _ticket_for(args, args.seeds[0])
    rec = eval_checkpoint(
        ticket,
        args.checkpoint,
        args.dataset,
        args.split,
        out_root=args.out,
        data=_data_options(args),
        device=args.device,
        seed=args.seeds[0],
    )
    x = rec["result"]["extras"]
    top5 = "" if x["top5"] is None else f"  top5 {x['top5']:.2f}"
    print(
        f"{args.checkpoint} on {args.dataset}/{args.split}: top1 {rec['result']['value']:.2f}"
        f"{top5}  loss {x['loss']:.4f}  (n={x['n']})"
    )


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from bench.leaderboard import leaderboard

    text, paths = leaderboard(
        args.out,
        fmt=args.format,
        task=args.task,
        dataset=args.dataset,
        ticket=args.ticket,
        plot=args.plot,
    )
    print(text)
    for p in paths:
        print(f"wrote {p}", file=sys.stderr)


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--heldout",
        default=None,
        help="held-out split carved from train: a count (5000) or per class "
        "(100/class); default: the protocol's (CIFAR/F-MNIST 5000, ImageNet "
        "100/class)",
    )
    g.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split")
    g.add_argument("--image-size", type=int, default=None, help="override the input side")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="cifar10 | cifar100 | imagenet | fashion-mnist")
    p.add_argument("model", help="<backbone>-<sam>, e.g. resnet164-se")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ticket", help="ticket file (or a name in tickets/)")
    which.add_argument("--mask", help="a control instead of a ticket: full | none | random:D")
    p.add_argument(
        "--sharing",
        choices=["block", "stage"],
        default="block",
        help="SAM sharing of a --mask control",
    )


# ---- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="ticketbench: lottery tickets of self-attention modules in ResNets.",
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _parser(
        sub,
        "list",
        "List models, SAMs or shipped tickets (glob filter).",
        "bench list models 'resnet5*-s*'",
    )
    p.add_argument("what", choices=["models", "sams", "tickets"])
    p.add_argument("pattern", nargs="?", default="*", help="shell-style glob")
    p.set_defaults(func=cmd_list)

    tp = _parser(
        sub,
        "ticket",
        "Show, validate or make ticket files.",
        "bench ticket show resnet50-sge-stage-ean",
    )
    tsub = tp.add_subparsers(dest="ticket_command", required=True, metavar="ACTION")

    p = _parser(
        tsub,
        "show",
        "Draw a ticket's mask per stage and measure its cost against the full-SAM and the "
        "SAM-free network: parameters, GMACs (SAM operations included, bench/flops.py) and "
        "median CPU/GPU latency at the stated input size, timed side by side.",
        "bench ticket show tickets/resnet50-sge-stage-ean.json --batch 1",
    )
    p.add_argument("tickets", nargs="*", help="ticket files or names in tickets/ (default: all)")
    p.add_argument("--device", default="cpu", help="where latency is measured")
    p.add_argument("--batch", type=int, default=1, help="batch size of the timed input")
    p.add_argument("--input-size", type=int, default=None, help="side (default: the model's)")
    p.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="least timed rounds; then until every median is within 2%% (20 s at most)",
    )
    p.add_argument("--no-latency", action="store_true", help="skip timing")
    p.add_argument("--no-cost", action="store_true", help="only draw the mask")
    p.set_defaults(func=cmd_ticket_show)

    p = _parser(
        tsub,
        "validate",
        "Check ticket files (exit 2 with the bad field named).",
        "bench ticket validate tickets/*.json",
    )
    p.add_argument("tickets", nargs="*", help="ticket files (default: all shipped)")
    p.set_defaults(func=cmd_ticket_validate)

    p = _parser(
        tsub,
        "make",
        "Write a ticket file: baseline masks (full, none, random:DENSITY with --seed) or a "
        "published mask given as stage bits ('100|1011|010011|011') or EAN codes (ean:4,11,19,3)"
        " with its --citation and --source.",
        "bench ticket make resnet164-se --mask random:0.5 --seed 1 -o tickets/r164-se-rand.json",
    )
    p.add_argument("model", help="<backbone>-<sam>, e.g. resnet50-se")
    p.add_argument("--mask", required=True, help="full | none | random:D | bits | ean:codes")
    add_sam_flags(p)
    p.add_argument("--seed", type=int, default=0, help="seed of a random mask")
    p.add_argument("--name", default=None, help="ticket name (default from model and mask)")
    p.add_argument("--citation", default=None, help="for a published mask: the paper")
    p.add_argument("--source", default=None, help="for a published mask: file or table")
    p.add_argument("-o", "--output", type=Path, default=None, help="default tickets/NAME.json")
    p.set_defaults(func=cmd_ticket_make)

    p = _parser(
        sub,
        "train",
        "Train a ticket from scratch (or a full / none / random control) on a classification "
        "dataset, select on the held-out split, score the selected weights once on the test "
        "split, and write one result record per (ticket, seed). --controls adds the full, "
        "none and random-of-equal-density controls. Under torchrun it trains with DDP.",
        "bench train cifar100 resnet164-se --ticket tickets/T.json --controls --seeds 0,1,2",
    )
    _add_model_flags(p)
    p.add_argument(
        "--controls",
        nargs="?",
        const="full,none,random",
        default=None,
        metavar="LIST",
        help="also train controls: full, none and random (of the ticket's density); "
        "a comma-separated subset picks some, e.g. --controls full,none",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from these weights (a checkpoint; loaded weights_only)",
    )
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="train on the first N of a seeded shuffle of the train split",
    )
    from bench.engine.hparams import add_train_args
    from bench.engine.rundir import add_mode_arg

    add_mode_arg(p)
    _add_data_flags(p)
    add_run_flags(p)
    g = p.add_argument_group("training hyperparameters (laid over --preset)")
    add_train_args(g, default_preset="auto", skip=("seed", "epochs"))
    p.set_defaults(func=cmd_train)

    p = _parser(
        sub,
        "eval",
        "Score a checkpoint of a ticket network on the held-out or test split and write "
        "a result record.",
        "bench eval cifar10 resnet20-se --ticket T.json runs/train_x/best.pt --split test",
    )
    _add_model_flags(p)
    p.add_argument("checkpoint", type=Path, help="best.pt / latest.pt or a state dict")
    p.add_argument("--split", default="test", choices=["heldout", "test"])
    _add_data_flags(p)
    add_run_flags(p)
    p.set_defaults(func=cmd_eval)

    from bench.search.cli import SEARCH_EXAMPLE, SEARCH_HELP, add_search_args, cmd_search

    p = _parser(sub, "search", SEARCH_HELP, SEARCH_EXAMPLE)
    add_run_flags(p)  # first: add_search_args makes --seeds default to the preset's seed
    add_search_args(p)
    p.set_defaults(func=cmd_search)

    from bench.transfer_cli import TRANSFER_EXAMPLE, TRANSFER_HELP, add_transfer_args, cmd_transfer

    p = _parser(sub, "transfer", TRANSFER_HELP, TRANSFER_EXAMPLE)
    add_transfer_args(p)
    add_run_flags(p)
    p.set_defaults(func=cmd_transfer)

    p = _parser(
        sub,
        "demo",
        "The whole flow on the embedded default (real Fashion-MNIST, a few minutes on 2 "
        "cores): search a resnet20-se ticket, retrain it beside its full and none controls, "
        "transfer it to every task with embedded sample data, print the summary and plots.",
        "bench demo --out runs/demo",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="where everything goes")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and the runs")
    p.set_defaults(func=cmd_demo)

    p = _parser(
        sub,
        "leaderboard",
        "Collect result records into leaderboards/<task>.csv (one row per run, failures "
        "kept) and summary.csv (mean, std, n over seeds; transfer score vs the full and none "
        "controls; cost saved vs full; average rank), print a table, optionally plot.",
        "bench leaderboard --out runs --format md --task crowd_counting --plot",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        help="root holding records/; tables go to OUT/leaderboards",
    )
    p.add_argument(
        "--format",
        choices=["csv", "md", "latex"],
        default="csv",
        help="printed table format (md/latex also written to a file)",
    )
    p.add_argument("--task", default=None, help="glob on task names")
    p.add_argument("--dataset", default=None, help="glob on dataset names")
    p.add_argument("--ticket", default=None, help="glob on ticket names")
    p.add_argument(
        "--plot",
        action="store_true",
        help="metric vs density, metric vs latency with Pareto front, masks",
    )
    p.set_defaults(func=cmd_leaderboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], object] = args.func
    try:
        func(args)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    except RunsFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
