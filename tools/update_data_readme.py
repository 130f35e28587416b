"""Regenerate the field table of data/README.md from edgemoe.records.FIELDS (the one definition)."""
from pathlib import Path

from edgemoe.records import FIELDS

path = Path(__file__).resolve().parents[1] / "data/README.md"
lines = path.read_text().split("\n")
head = lines[: lines.index("| field | type | required | meaning |")]
rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
rows += [f"| `{n}` | {t} | {'yes' if req else ''} | {d} |" for n, t, req, d in FIELDS]
path.write_text("\n".join(head + rows) + "\n")
print(f"{path}: {len(FIELDS)} fields")
