"""A report as data, rendered to Markdown (``REPORT.md``) and HTML (``report.html``).

A report is a list of blocks, built once from the results:

* :class:`Heading` (level, text), :class:`Text` (a paragraph), :class:`Table`,
  :class:`Image` (a PNG beside the report);

:func:`to_markdown` and :func:`to_html` render the same blocks, so the two files
cannot disagree. Paragraphs and cells may hold two inline marks, ``code`` and
**bold**, which both renderers understand.

Markdown tables come from :func:`md_table`, the one table writer: ``pandas``'
``to_markdown`` needs ``tabulate``, which is not installed, and ten lines here are
less than a dependency for pipes and dashes. The HTML page is a Jinja2 template
(autoescaped).
"""

import dataclasses
import html
import re

import jinja2
from markupsafe import Markup

__all__ = [
    "Heading",
    "Image",
    "Table",
    "Text",
    "md_table",
    "times",
    "to_html",
    "to_markdown",
]


@dataclasses.dataclass
class Heading:
    level: int
    text: str


@dataclasses.dataclass
class Text:
    text: str


@dataclasses.dataclass
class Image:
    alt: str
    file: str  # a name beside the report


@dataclasses.dataclass
class Table:
    """Rows of strings under ``columns``; ``notes`` are its numbered footnotes.

    Members
    -------
    columns : list of str
    rows : list of list of str
        One string a column.
    notes : list of str
        Footnotes; :meth:`na` adds one and returns the cell that points at it.
    """

    columns: list[str]
    rows: list[list[str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, *cells: str) -> None:
        """Append a row; it must have one cell a column."""
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(self.columns)} cells expected, not {len(cells)}")
        self.rows.append([str(c) for c in cells])

    def note(self, text: str) -> str:
        """The marker (``[n]``) of footnote ``text``, added once."""
        if text not in self.notes:
            self.notes.append(text)
        return f"[{self.notes.index(text) + 1}]"

    def na(self, reason: str) -> str:
        """A blank cell: ``n/a`` and the footnote that says why."""
        return f"n/a {self.note(reason)}"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


Block = Heading | Text | Table | Image


def times(a: float, b: float) -> str:
    """``a`` against ``b`` (both rates, higher is better) as "3.8x faster" or
    "3.8x slower", never a ratio below 1."""
    r = a / b
    return f"{r:.2f}x faster" if r >= 1 else f"{1 / r:.2f}x slower"


def md_table(table: Table) -> list[str]:
    """The lines of ``table`` in Markdown, its footnotes below it."""

    def row(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [row(table.columns), "|" + "---|" * len(table.columns)]
    lines += [row(r) for r in table.rows]
    if table.notes:
        lines.append("")
        lines += [f"[{i}] {n}  " for i, n in enumerate(table.notes, 1)]
    return lines


def to_markdown(blocks: list, prefix: str = "") -> str:
    """The blocks as Markdown; images linked as ``prefix`` + their file."""
    lines = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Text):
            lines += [b.text, ""]
        elif isinstance(b, Table):
            lines += [*md_table(b), ""]
        elif isinstance(b, Image):
            lines += [f"![{b.alt}]({prefix}{b.file})", ""]
        else:
            raise TypeError(f"a report block must be Heading, Text, Table or Image, not {b!r}")
    return "\n".join(lines)


def _inline(text: str) -> str:
    """``code`` and **bold** as HTML, everything else escaped."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: sans-serif; max-width: 70em; margin: 2em auto; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; }
th { background: #eee; } .notes { font-size: 0.85em; color: #444; }
img { max-width: 100%; }
</style></head><body>
{% for b in blocks %}
{%- if b.kind == "heading" %}<h{{ b.level }}>{{ b.html }}</h{{ b.level }}>
{% elif b.kind == "text" %}<p>{{ b.html }}</p>
{% elif b.kind == "image" %}<p><img src="{{ b.src }}" alt="{{ b.alt }}"></p>
{% else %}<table><thead><tr>{% for c in b.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in b.rows %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% if b.notes %}<ol class="notes">{% for n in b.notes %}<li>{{ n }}</li>{% endfor %}</ol>
{% endif %}{% endif %}
{%- endfor %}
</body></html>
"""
)


def to_html(blocks: list, title: str, prefix: str = "") -> str:
    """The blocks as one HTML page; images as ``<img>`` at ``prefix`` + their file."""
    items = []
    for b in blocks:
        if isinstance(b, Heading):
            items.append({"kind": "heading", "level": b.level, "html": _mark(b.text)})
        elif isinstance(b, Text):
            items.append({"kind": "text", "html": _mark(b.text)})
        elif isinstance(b, Image):
            items.append({"kind": "image", "src": prefix + b.file, "alt": b.alt})
        elif isinstance(b, Table):
            items.append(
                {
                    "kind": "table",
                    "columns": [_mark(c) for c in b.columns],
                    "rows": [[_mark(c) for c in r] for r in b.rows],
                    "notes": [_mark(n) for n in b.notes],
                }
            )
        else:
            raise TypeError(f"a report block must be Heading, Text, Table or Image, not {b!r}")
    return _PAGE.render(title=title, blocks=items)


def _mark(text: str):
    return Markup(_inline(text))
