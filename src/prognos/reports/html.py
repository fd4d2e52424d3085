"""A tiny self-contained HTML page: sections of paragraphs, tables and inline figures.

Reports are mailed, archived and opened on machines without network access, so the page carries
everything: styles inline, figures as base64 PNG ``data:`` URIs, no script, no external link.
The page is a Jinja2 template with autoescaping on, so no value from the data (an asset id, a
sensor name, a file path) can inject markup.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, select_autoescape

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["Figure64", "Page", "Section", "Table", "figure_png"]

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ page.title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}img{max-width:100%}
p.note{color:#555;font-size:.9em}
</style></head><body>
<h1>{{ page.title }}</h1>
{% for line in page.intro %}<p>{{ line }}</p>
{% endfor %}
<nav><ul>{% for s in page.sections %}<li><a href="#{{ s.anchor }}">{{ s.title }}</a></li>
{% endfor %}</ul></nav>
{% for s in page.sections %}<section id="{{ s.anchor }}"><h2>{{ s.title }}</h2>
{% for block in s.blocks %}{% if block.kind == "text" %}<p>{{ block.text }}</p>
{% elif block.kind == "note" %}<p class="note">{{ block.text }}</p>
{% elif block.kind == "table" %}<table>
{% if block.caption %}<caption>{{ block.caption }}</caption>{% endif %}
<tr>{% for h in block.header %}
<th{% if loop.first %} class="l"{% endif %}>{{ h }}</th>{% endfor %}</tr>
{% for row in block.rows %}<tr>{% for cell in row %}
<td{% if loop.first %} class="l"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% elif block.kind == "figure" %}<figure>
<img alt="{{ block.caption }}" src="data:image/png;base64,{{ block.data }}">
<figcaption>{{ block.caption }}</figcaption></figure>
{% endif %}{% endfor %}</section>
{% endfor %}</body></html>
"""


@dataclass(frozen=True)
class Table:
    """Rows of already formatted cells under a header."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""
    kind: str = "table"

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, caption: str = "", digits: int = 4) -> Table:
        """A table from a DataFrame (its index as the first column), numbers to ``digits``."""
        header = [str(frame.index.name or ""), *(str(c) for c in frame.columns)]
        rows = [
            [_cell(index, digits), *(_cell(v, digits) for v in values)]
            for index, values in zip(frame.index, frame.itertuples(index=False), strict=True)
        ]
        return cls(header=header, rows=rows, caption=caption)


@dataclass(frozen=True)
class Figure64:
    """A PNG figure, base64-encoded for a ``data:`` URI."""

    data: str
    caption: str
    kind: str = "figure"


@dataclass(frozen=True)
class _Text:
    text: str
    kind: str = "text"


@dataclass
class Section:
    """One titled part of the page; blocks render in the order they were added."""

    title: str
    anchor: str
    blocks: list[_Text | Table | Figure64] = field(default_factory=list)

    def text(self, text: str) -> Section:
        self.blocks.append(_Text(text))
        return self

    def note(self, text: str) -> Section:
        self.blocks.append(_Text(text, kind="note"))
        return self

    def table(self, table: Table) -> Section:
        self.blocks.append(table)
        return self

    def figure(self, figure: Figure, caption: str) -> Section:
        self.blocks.append(figure_png(figure, caption))
        return self


@dataclass
class Page:
    """A titled page of sections."""

    title: str
    intro: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str, anchor: str) -> Section:
        section = Section(title=title, anchor=anchor)
        self.sections.append(section)
        return section

    def render(self) -> str:
        environment = Environment(
            autoescape=select_autoescape(default=True, default_for_string=True)
        )
        return environment.from_string(_TEMPLATE).render(page=self)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path


def figure_png(figure: Figure, caption: str, dpi: int = 80, colors: int = 128) -> Figure64:
    """Render and close a matplotlib figure (closing frees it: a report draws dozens).

    The PNG is reduced to a ``colors`` palette (Pillow, which matplotlib depends on): dense
    scatter plots with transparency shrink about 4x (577 to 143 KiB for a 12-panel grid) with
    no visible change.
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    buffer.seek(0)
    image = (
        Image.open(buffer).convert("RGB").quantize(colors=colors, method=Image.Quantize.FASTOCTREE)
    )
    small = io.BytesIO()
    image.save(small, format="PNG", optimize=True)
    return Figure64(data=base64.b64encode(small.getvalue()).decode("ascii"), caption=caption)


def _cell(value: object, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.{digits}g}"
    try:  # NumPy scalars
        import numpy as np

        if isinstance(value, np.integer):
            return f"{int(value):,}"
        if isinstance(value, np.floating):
            return _cell(float(value), digits)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return str(value)
