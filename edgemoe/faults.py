"""The end of a run, for a person: which jobs failed and which cells were recorded as failed
(oom, crash, timeout), each with its reason and its log, in a few lines after Snakemake's
per-job error blocks. Failed cells stay in the run table as results; this only points at them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

MAX_ITEMS = 12
MAX_REASON = 300
_QUALIFIED_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)+(?=\w*(?:Error|Exception|Exit)\b)")


@dataclass(frozen=True)
class FailedJob:
    rule: str
    wildcards: dict[str, str]
    logs: tuple[str, ...] = ()


def last_line(path: Path | str | None) -> str | None:
    """The last non-empty line of a log: for a job's Python script, the exception and its message."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except (OSError, TypeError):
        return None
    return _QUALIFIED_EXCEPTION.sub("", lines[-1]) if lines else None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


def failed_cells(records: list[tuple[str, str | None]]) -> list[tuple[str, str, str, str | None]]:
    """(cell id, status, reason, log) of every record that is not ok, from (records file, log) pairs."""
    out = []
    for path, log in records:
        try:
            rows = [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
        except (OSError, ValueError):
            continue
        for r in rows:
            if r.get("status", "ok") != "ok":
                out.append((r.get("cell_id", path), r["status"], r.get("status_reason") or "", log))
    return out


def summary(failed: list[FailedJob], records: list[tuple[str, str | None]]) -> str | None:
    """A few lines on what failed in this run, or None when nothing did."""
    cells = failed_cells(records)
    if not failed and not cells:
        return None
    head = []
    if failed:
        head.append(f"{len(failed)} job{'s' * (len(failed) != 1)} failed")
    if cells:
        head.append(f"{len(cells)} cell{'s' * (len(cells) != 1)} recorded as failed")
    lines = [f"Summary of this run's failures ({', '.join(head)}):"]
    items = []
    for j in sorted(failed, key=lambda j: (j.rule, sorted(j.wildcards.items()))):
        where = ", ".join(f"{k}={v}" for k, v in j.wildcards.items())
        log = j.logs[0] if j.logs else None
        reason = last_line(log) or "no log output; see Snakemake's error block above"
        items.append(f"  job {j.rule}{f' ({where})' if where else ''}: {_short(reason)}\n      log: {log or 'none'}")
    for cell, status, reason, log in cells:
        items.append(f"  cell {cell}: {status}{f' ({_short(reason)})' if reason else ''}\n      log: {log or 'none'}")
    lines += items[:MAX_ITEMS]
    if len(items) > MAX_ITEMS:
        lines.append(f"  ... and {len(items) - MAX_ITEMS} more")
    if cells:
        lines.append("Failed cells are results: their records are in the run table with status and status_reason.")
    if failed:
        lines.append("Fix what the reason says, then run the same command again: finished jobs are kept, only the "
                     "failed ones and what depends on them run.")
    return "\n".join(lines)
