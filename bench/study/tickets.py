"""The tickets a study runs, and what to say about a ticket file that is not there yet."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from bench.study.schema import Study
from bench.ticket.schema import TICKET_DIR, Ticket, load_ticket, resolve_ticket_paths
from bench.util.errors import BenchError

STUDY_DIR = TICKET_DIR.parent / "studies"  # the shipped study files


@dataclass(frozen=True)
class TicketRef:
    """A ticket as the study's commands name it (`arg`), and the ticket when it exists."""

    arg: str
    model: str
    ticket: Ticket | None
    made_by_search: bool

    @property
    def label(self) -> str:
        return Path(self.arg).stem


def study_tickets(study: Study) -> list[TicketRef]:
    """The search's ticket (loaded when the search already wrote it), then the listed ones;
    BenchError for a listed ticket that neither exists nor is the search's."""
    refs: list[TicketRef] = []
    made = None
    if study.search is not None:
        made = Path(study.search.ticket)
        ticket = load_ticket(made) if made.is_file() else None
        refs.append(TicketRef(study.search.ticket, study.search.model, ticket, True))
    for i, item in enumerate(study.tickets):
        path = resolve_ticket_paths([item])[0]
        if made is not None and path == made:
            continue
        if not path.exists():
            raise BenchError(f"{study.path}: tickets[{i}]: {missing_ticket(path)}")
        try:
            ticket = load_ticket(path)
        except BenchError as e:
            raise BenchError(f"{study.path}: tickets[{i}]: {e}") from None
        refs.append(TicketRef(item, ticket.model_name, ticket, False))
    labels = [r.label for r in refs]
    if len(set(labels)) < len(labels):
        raise BenchError(f"{study.path}: tickets: two tickets share a file name ({labels})")
    return refs


def missing_ticket(path: str | Path) -> str:
    """One line for a ticket path that does not exist: the shipped tickets' names and what
    makes this one (the shipped study whose search writes it, or `bench search`)."""
    path = Path(path)
    shipped = ", ".join(sorted(p.stem for p in TICKET_DIR.glob("*.json"))) or "none"
    want = path.resolve()
    makers = [s for s in sorted(STUDY_DIR.glob("*.toml")) if _search_ticket(s) == want]
    if makers:
        how = f"`bench study run {_shown(makers[0])}` makes it (its search)"
    else:
        how = f"make it with `bench search DATASET MODEL --save-ticket {path}`"
    return f"{path}: cannot read ticket (no such file); shipped tickets: {shipped}; {how}"


def _search_ticket(study_file: Path) -> Path | None:
    try:
        data = tomllib.loads(study_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ticket = data.get("search", {}).get("ticket") if isinstance(data.get("search"), dict) else None
    # A study's paths are relative to where it runs: the repository, for the shipped ones.
    return (STUDY_DIR.parent / ticket).resolve() if isinstance(ticket, str) else None


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
