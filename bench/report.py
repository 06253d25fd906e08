"""The figures of a run against their targets: a printed table, and the same as JSON and Markdown."""
from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

CHECKS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


@dataclass
class Figure:
    """One measured figure of the bridge, judged by itself or against the bare stack's same figure.

    `compare` says how: None judges `value` against `target`; "ratio" judges value ÷ bare and "difference"
    value − bare. `target` None means the figure is shown for context, not judged.
    """

    key: str
    label: str
    value: Optional[float]
    unit: str = ""
    target: Optional[float] = None
    check: str = "<="
    bare: Optional[float] = None
    compare: Optional[str] = None
    note: str = ""

    @property
    def measured(self) -> Optional[float]:
        """What the target is checked against."""
        if self.compare is None:
            return self.value
        if self.value is None or self.bare is None:
            return None
        if self.compare == "ratio":
            return self.value / self.bare if self.bare else None
        return self.value - self.bare

    @property
    def passed(self) -> Optional[bool]:
        if self.target is None or (self.compare is not None and self.bare is None):
            return None  # context, or a comparison whose bare side was not measured in this run
        measured = self.measured
        if measured is None:
            return False
        return CHECKS[self.check](round(measured, 6), self.target)

    def as_dict(self) -> dict:
        return {**asdict(self), "measured": self.measured, "passed": self.passed}


def number(value: Optional[float], unit: str = "") -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
    return f"{text} {unit}".strip()


def target_text(figure: Figure) -> str:
    if figure.target is None:
        return "(context)"
    sign = {"<=": "≤", ">=": "≥", "==": "="}[figure.check]
    if figure.compare == "ratio":
        return f"{sign} {number(figure.target)}× bare"
    if figure.compare == "difference":
        return f"{sign} bare + {number(figure.target, figure.unit)}"
    return f"{sign} {number(figure.target, figure.unit)}"


def versus_text(figure: Figure) -> str:
    """The bridge against the bare stack, as its target reads it."""
    measured = figure.measured
    if figure.compare is None or measured is None:
        return ""
    # Two decimals, and more while they would show the target itself beside a verdict it cannot explain (0.898 as
    # 0.90× FAIL); the verdict's own comparison stops at six.
    digits, target = 2, figure.target
    differs = target is not None and f"{measured:.6f}" != f"{target:.6f}"
    while differs and digits < 6 and f"{measured:.{digits}f}" == f"{target:.{digits}f}":
        digits += 1
    if figure.compare == "ratio":
        return f"{measured:.{digits}f}×"
    return f"{measured:+.{digits}f} {figure.unit}".strip()


def verdict(figure: Figure) -> str:
    return {True: "pass", False: "FAIL", None: ""}[figure.passed]


@dataclass
class Report:
    machine: dict
    settings: dict
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def find(self, key: str) -> Optional[Figure]:
        return next((f for f in self.figures if f.key == key), None)

    def rows(self) -> list[list[str]]:
        rows = []
        for f in self.figures:
            rows.append([f.label, target_text(f), number(f.value, f.unit),
                         number(f.bare, f.unit) if f.bare is not None else "", versus_text(f), verdict(f), f.note])
        return rows

    def text(self) -> str:
        header = ["figure", "target", "bridge", "bare", "bridge vs bare", "", "note"]
        rows = [header, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
        lines = []
        for row in rows:
            cells = [row[i].ljust(widths[i]) for i in range(len(widths))]
            lines.append("  ".join(cells) + ("  " + row[-1] if row[-1] else ""))
        return "\n".join(lines)

    def markdown(self) -> str:
        m = self.machine
        out = [
            f"# Benchmark: {m.get('mode', 'full')} run, {m.get('date', '')}",
            "",
            f"Machine: {m.get('nproc')} cores, {m.get('cpu')}, Python {m.get('python')}, load generator "
            f"{m.get('load_generator')}; fake platform latency {self.settings.get('latency_ms')} ms; commit "
            f"{m.get('commit')}. Other processes kept {m.get('background_cores', 0):.2f} cores busy on average "
            "while it ran (0 on a quiet machine).",
            "",
            "| figure | target | bridge | bare | bridge vs bare | | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows():
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        if self.notes:
            out += ["", *[f"- {note}" for note in self.notes]]
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        out += ["", f"Settings: {settings}.", ""]
        return "\n".join(out)

    def as_dict(self) -> dict:
        return {"machine": self.machine, "settings": self.settings, "notes": self.notes,
                "figures": [f.as_dict() for f in self.figures],
                "passed": all(f.passed is not False for f in self.figures)}

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        json_path, md_path = directory / f"{name}.json", directory / f"{name}.md"
        json_path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        md_path.write_text(self.markdown())
        return json_path, md_path
