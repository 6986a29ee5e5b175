"""One row of the fault table and how the table is printed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    fault: str
    load: str
    outcome: str = "not run"
    lost: int | None = None
    duplicated: str = "-"
    recovery_s: float | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.lost == 0


COLUMNS = ("fault", "load", "outcome", "lost", "duplicated", "recovery")


def cells(row: Row) -> tuple[str, ...]:
    return (row.fault, row.load, row.outcome, "-" if row.lost is None else str(row.lost),
            row.duplicated, "-" if row.recovery_s is None else f"{row.recovery_s:.1f} s")


def render(rows: list[Row]) -> str:
    """A plain-text table (it goes into release notes as it is), then one note per row."""
    table = [COLUMNS, *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(cells(row)) for row in rows]
    notes = [f"{n}. {row.fault}: {row.note}" for n, row in enumerate(rows, 1) if row.note]
    return "\n".join(out + ([""] + notes if notes else []))
