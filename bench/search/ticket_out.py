"""Search outputs: the ticket with its provenance, and the plot of the search.

episodes.jsonl and steps.jsonl are written by the loop (bench.search.loop); this module
turns the finished search into ticket.json and search.png in the run directory.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.engine.rundir import HPARAMS_FILE
from bench.models.resnet import ModelConfig
from bench.search.evaluator import Evaluator, mask_key
from bench.search.reward import Reward
from bench.search.strategies.base import Strategy
from bench.ticket.schema import Ticket, mask_to_stages, network_ticket
from bench.util.environment import environment
from bench.util.io import atomic_write_bytes, read_json, remove_stale_temps

__all__ = [
    "TICKET_FILE",
    "PLOT_FILE",
    "copy_ticket",
    "plot_search",
    "policy_preference",
    "write_ticket",
]

TICKET_FILE = "ticket.json"
PLOT_FILE = "search.png"


def write_ticket(
    run_dir: str | Path,
    name: str,
    config: ModelConfig,
    mask: Sequence[int],
    provenance: Mapping[str, Any],
) -> tuple[Ticket, Path]:
    """Validate and write run_dir/ticket.json (atomically); provenance kind is "searched".

    The provenance gains `environment` (bench.util.environment: torch, device, threads, ...,
    fingerprint) and, when the supernet or search run dir recorded another fingerprint
    (a run resumed or a supernet trained elsewhere), `environment_mixed`: every fingerprint
    seen. The checksum covers the identity only, so neither changes it.
    """
    env = environment()
    prov: dict[str, Any] = {"kind": "searched", **provenance, "environment": env}
    seen = _recorded_fingerprints(Path(run_dir), provenance.get("supernet_run"))
    if seen - {env["fingerprint"]}:
        prov["environment_mixed"] = sorted(seen | {env["fingerprint"]})
    ticket = network_ticket(name, config, mask, prov)
    path = ticket.save(Path(run_dir) / TICKET_FILE)
    return ticket, path


def _recorded_fingerprints(run_dir: Path, supernet_run: str | None) -> set[str]:
    """Fingerprints recorded in the search's and its supernet's hparams.json (if any)."""
    seen: set[str] = set()
    dirs = [run_dir] + ([run_dir.parent / supernet_run] if supernet_run else [])
    for d in dirs:
        try:
            meta = read_json(d / HPARAMS_FILE)
        except (OSError, ValueError):
            continue
        envs = [meta.get("environment"), *(meta.get("resumed_environments") or [])]
        seen |= {e["fingerprint"] for e in envs if isinstance(e, dict) and "fingerprint" in e}
    return seen


def policy_preference(
    strategy: Strategy, evaluator: Evaluator, reward: Reward, stage_sizes: Sequence[int]
) -> dict[str, Any]:
    """Extra provenance: the strategy's own final preference, scored like the candidates.

    {"policy_argmax": {mask, stages, density, top1, reward, sampled}} for a strategy with a
    preferred mask (reinforce: the policy's per-slot argmax), else {}. top1 comes from the
    evaluator's cache when the mask was sampled, else from its score function on the same
    scoring set (not charged to the budget, as the full/none references are). The ticket
    itself stays the best sampled mask. Call it on every rank (the scorer may all-reduce).
    """
    mask = strategy.preferred_mask()
    if mask is None:
        return {}
    mask = tuple(int(b) for b in mask)
    hit = evaluator.cache.get((mask_key(mask), evaluator.size))
    sampled = hit is not None
    if hit is None:
        hit = evaluator.score_fn(mask, evaluator.size)
    return {
        "policy_argmax": {
            "mask": mask_key(mask),
            "stages": mask_to_stages(mask, tuple(stage_sizes)),
            "density": sum(mask) / len(mask),
            "top1": hit.top1,
            "reward": reward(mask, hit.top1),
            "sampled": sampled,
        }
    }


def copy_ticket(src: Path, dest: str | Path) -> Path:
    """Copy a written ticket to `dest` (atomically, see bench.util.io), first removing what a
    killed copy to `dest` left there (only temporary files of dead writers)."""
    dest = Path(dest)
    remove_stale_temps(dest.parent, dest.name)
    atomic_write_bytes(dest, Path(src).read_bytes())
    return dest


def plot_search(
    episodes: Sequence[Mapping[str, Any]],
    rounds: Sequence[Mapping[str, Any]],
    slot_ids: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Reward and density per evaluation (best so far drawn as a line) and the per-slot keep
    probability over steps (a heat map; stage boundaries marked). PNG, matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 9), constrained_layout=True)
    _plot_evaluations(axes[0], axes[1], episodes)
    _plot_keep_probabilities(fig, axes[2], rounds, slot_ids)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())
    return path


def _plot_evaluations(ax_r: Any, ax_d: Any, episodes: Sequence[Mapping[str, Any]]) -> None:
    """Reward (best so far as a line) and density of every evaluation."""
    import numpy as np

    x = [e["evaluation"] for e in episodes]
    final = [e.get("final", True) for e in episodes]
    rew = [e["reward"] for e in episodes]
    col = ["tab:blue" if f else "tab:gray" for f in final]
    ax_r.scatter(x, rew, s=8, c=col, label="candidate (grey: halving rung)")
    best, run = [], float("-inf")
    for e, f in zip(episodes, final):
        if f:
            run = max(run, e["reward"])
        best.append(run if run > float("-inf") else np.nan)
    ax_r.plot(x, best, color="tab:red", label="best so far")
    ax_r.set_ylabel("reward")
    ax_r.legend(loc="lower right", fontsize=8)
    ax_d.scatter(x, [e["density"] for e in episodes], s=8, c=col)
    ax_d.set_ylabel("density (kept / slots)")
    ax_d.set_xlabel("evaluation")
    ax_d.set_ylim(-0.05, 1.05)


def _plot_keep_probabilities(
    fig: Any, ax_k: Any, rounds: Sequence[Mapping[str, Any]], slot_ids: Sequence[str]
) -> None:
    """The per-slot keep probability over steps as a heat map, stage boundaries marked."""
    import numpy as np

    keep = [r.get("keep_prob") for r in rounds]
    steps = [r["step"] for r in rounds if r.get("keep_prob") is not None]
    mat = np.array([k for k in keep if k is not None], dtype=float)
    if mat.size:
        im = ax_k.imshow(
            mat.T,
            aspect="auto",
            origin="lower",
            vmin=0,
            vmax=1,
            cmap="viridis",
            extent=(steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(slot_ids) - 0.5),
        )
        fig.colorbar(im, ax=ax_k, label="keep probability")
        stages = [s.rsplit(".", 1)[0] for s in slot_ids]
        for i in range(1, len(stages)):
            if stages[i] != stages[i - 1]:
                ax_k.axhline(i - 0.5, color="white", lw=0.8)
        if len(slot_ids) <= 20:
            ax_k.set_yticks(range(len(slot_ids)), slot_ids, fontsize=7)
    ax_k.set_xlabel("step")
    ax_k.set_ylabel("slot")
