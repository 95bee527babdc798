"""`SearchConfig`: every setting of one search, typed, and its cheap checks.

`bench search` fills one from its flags; `run_search(config)` runs it. `resolve()` turns
it into a `SearchSetup` (the preset's records with the overrides laid over them, the
network, the seed) and checks every setting that can be checked without data or
training, so a bad one fails in seconds, never after the supernet has trained. Heavy
modules (torch, timm, the datasets) are imported only inside `resolve`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.util.errors import BenchError

if TYPE_CHECKING:
    from bench.models.resnet import ModelConfig
    from bench.runs.classify import DataOptions
    from bench.search.hparams import SearchPreset

__all__ = ["SearchConfig", "SearchSetup", "resolve_search"]

Mode = Literal["new", "cover"]


@dataclasses.dataclass(frozen=True)
class SearchSetup:
    """What one search runs, resolved from its config before any data or training."""

    preset: SearchPreset  # the preset's three records with the overrides laid over them
    config: ModelConfig  # the supernet's structure: backbone, SAM, sharing, SAM options
    seed: int


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """One search: what to search, on which data, where to write. Frozen; use `replace`.

    None means "not given": seed and sharing are then the preset's (`short`: 0, block;
    `ean`: 666, stage), heldout and image_size the dataset's protocol. epochs overrides the
    supernet's epochs, iters the controller steps, budget the candidate evaluations; the
    *_overrides set any field of the preset's records by name. mode "cover" redoes the
    search (the supernet is reused). save_ticket: also copy the ticket there (its stem
    names the ticket unless ticket_name does).
    """

    dataset: str
    model: str  # <backbone>-<sam>, e.g. resnet20-se
    # --- what to search --------------------------------------------------------------------
    strategy: str = "reinforce"
    preset: str = "short"
    seed: int | None = None
    sharing: str | None = None
    sam_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int | None = None
    iters: int | None = None
    budget: int | None = None
    search_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    supernet_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sampler_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # --- data ------------------------------------------------------------------------------
    data_root: Path | None = None
    heldout: int | str | None = None
    split_seed: int = 0
    image_size: int | None = None
    # --- where and how ---------------------------------------------------------------------
    out_root: Path = Path("runs")
    device: str = "auto"  # bench.engine.device.select_device's names
    deterministic: bool = False  # bench.engine.device.set_deterministic; not in the run hash
    mode: Mode = "new"
    save_ticket: Path | None = None
    ticket_name: str | None = None

    def __post_init__(self) -> None:
        # Accept what callers naturally pass (str paths, None for "no overrides").
        for name in ("data_root", "save_ticket"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "out_root", Path(self.out_root))
        for name in ("sam_args", "search_overrides", "supernet_overrides", "sampler_overrides"):
            object.__setattr__(self, name, dict(getattr(self, name) or {}))

    def replace(self, **changes: Any) -> SearchConfig:
        return dataclasses.replace(self, **changes)

    @property
    def data(self) -> DataOptions:
        """How the dataset is read (the data fields above)."""
        from bench.runs.classify import DataOptions

        names = ("data_root", "heldout", "split_seed", "image_size")
        return DataOptions(**{n: getattr(self, n) for n in names})

    def check(self) -> None:
        """The checks that need neither torch nor data: one-line BenchErrors naming the flag."""
        from bench.engine.rundir import MODES

        if self.mode not in MODES:
            raise BenchError(f"--mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.save_ticket is not None:
            if self.save_ticket.suffix != ".json":
                raise BenchError(f"--save-ticket {self.save_ticket}: expected a .json path")
            if self.save_ticket.is_dir():
                raise BenchError(f"--save-ticket {self.save_ticket}: is a directory, not a file")
        if self.out_root.exists() and not self.out_root.is_dir():
            raise BenchError(f"--out {self.out_root}: expected a directory, found a file")
        if self.data_root is not None and not self.data_root.expanduser().is_dir():
            raise BenchError(f"--data-root {self.data_root}: no such directory")
        if not _is_int(self.split_seed) or not 0 <= self.split_seed < 2**63:
            raise BenchError(f"split seed {self.split_seed!r}: expected an integer in [0, 2^63)")
        if self.image_size is not None and (not _is_int(self.image_size) or self.image_size < 8):
            raise BenchError(f"--image-size {self.image_size!r}: expected an integer >= 8")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise BenchError(f"--seeds {self.seed!r}: expected an integer in [0, 2^63)")
        from bench.cli.args import check_device

        check_device(self.device)

    def resolve(self) -> SearchSetup:
        """The preset, network and seed of this search; every cheap check first.

        The preset's search space fixes the sharing and some SAM options (`ean`: the official
        ones, see bench.search.hparams.EAN_SPACE); a conflicting setting is refused.
        """
        from bench.models.resnet import ModelConfig, parse_model_name
        from bench.search.hparams import resolve_preset
        from bench.search.strategies import STRATEGIES

        self.check()
        STRATEGIES.get(self.strategy)
        _check_heldout(self.heldout)
        backbone, sam = parse_model_name(self.model)
        if sam is None:
            raise BenchError(f"model {self.model!r}: a search needs a SAM, e.g. {self.model}-se")
        p = resolve_preset(
            self.preset,
            self.dataset,
            epochs=self.epochs,
            iters=self.iters,
            budget=self.budget,
            search=dict(self.search_overrides),
            supernet=dict(self.supernet_overrides),
            sampler=dict(self.sampler_overrides),
        )
        if p.supernet.compile:
            # Each block's SAM is switched by a Python flag that changes every step: Dynamo
            # would guard on it and recompile per mask until its limit, then run eagerly.
            raise BenchError(
                "--supernet-compile: the supernet switches its SAMs by a new mask every "
                "step, which torch.compile would recompile for; train it without"
            )
        share, args = p.space.resolve(p.name, sam, self.sharing, self.sam_args)
        config = ModelConfig(backbone, sam, args, share)  # type: ignore[arg-type]
        return SearchSetup(p, config, p.seed if self.seed is None else int(self.seed))


def resolve_search(dataset: str, model: str, **settings: Any) -> SearchSetup:
    """`SearchConfig(dataset, model, **settings).resolve()`, as `bench search` calls it."""
    return SearchConfig(dataset, model, **settings).resolve()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_heldout(heldout: int | str | None) -> None:
    """A search scores its candidates on the held-out split: it cannot be empty."""
    if heldout is None:
        return
    from bench.data.datasets import HeldoutRule

    try:
        rule = HeldoutRule.parse(heldout)
    except BenchError as e:
        raise BenchError(f"--heldout: {e}") from None
    if rule.count < 1:
        raise BenchError(
            f"--heldout {heldout}: a search scores its candidates on the held-out split; "
            "expected at least 1 image (e.g. 5000 or 100/class)"
        )
