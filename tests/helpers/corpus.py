"""Small real document trees for indexing tests, written fresh into a temp folder."""

from __future__ import annotations

from pathlib import Path

NOTES_MD = """\
# Garden notes

## Tomatoes

Tomatoes need at least six hours of direct sun every day. Water them deeply twice a week
rather than a little every day, so the roots grow down instead of staying near the surface.

## Compost

A compost heap needs a balance of green material, such as grass clippings and vegetable
scraps, and brown material, such as dry leaves and cardboard. Turn it every two weeks.
"""

RECIPE_TXT = """\
Lentil soup

Rinse two cups of red lentils. Fry an onion, two carrots and a celery stalk in olive oil
until soft. Add the lentils, six cups of stock and a bay leaf, then simmer for thirty minutes.
Season with cumin, salt and lemon juice before serving.
"""

SCRIPT_PY = '''\
"""Utilities for the invoice exporter."""


def total_with_vat(amount: float, rate: float = 0.2) -> float:
    """Return the amount including value added tax."""
    return round(amount * (1 + rate), 2)


class InvoiceExporter:
    """Writes invoices as CSV files for the accounting department."""

    def export(self, invoices: list[dict]) -> str:
        return "\\n".join(f"{i['id']},{i['total']}" for i in invoices)
'''

PAGE_HTML = """\
<!DOCTYPE html>
<html><head><title>Travel policy</title><style>body { color: red; }</style></head>
<body>
<h1>Travel policy</h1>
<p>Employees must book flights at least fourteen days before departure to receive the
corporate discount.</p>
<h2>Expenses</h2>
<p>Hotel costs are reimbursed up to 150 euros per night in capital cities.</p>
<script>console.log("not indexed");</script>
</body></html>
"""

GUIDE_RST = """\
Backup guide
============

Nightly backups
---------------

The backup job runs at two in the morning and keeps thirty daily snapshots on the NAS.

Restoring
---------

To restore a single file, mount the snapshot read-only and copy the file back.
"""


def write_tree(root: Path) -> dict[str, Path]:
    """A mixed folder of real documents; returns name → path."""
    files = {
        "notes.md": NOTES_MD,
        "recipes/lentil-soup.txt": RECIPE_TXT,
        "code/exporter.py": SCRIPT_PY,
        "policy/travel.html": PAGE_HTML,
        "docs/backup.rst": GUIDE_RST,
    }
    paths = {}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths[name] = path
    return paths


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A real multi-page PDF written with fpdf2, one string per page."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def make_docx(path: Path, heading: str, paragraphs: list[str]) -> Path:
    import docx

    document = docx.Document()
    document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    document.save(str(path))
    return path
