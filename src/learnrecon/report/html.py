"""A benchmark folder's ``report.md`` as one self-contained HTML page (figures embedded), to open or send.

The Markdown is rendered by the ``markdown`` package (with its ``tables`` extension); every image the report
links from inside its folder is embedded as a base64 ``data:`` URI, so the page needs no other file.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from learnrecon.errors import DataFileError
from learnrecon.io.files import atomic_path, check_output_path

__all__ = ["write_html_report"]

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""

_IMAGE = re.compile(r'<img alt="(?P<alt>[^"]*)" src="(?P<src>[^"]+)"')


def write_html_report(folder: str | Path, out: str | Path | None = None, overwrite: bool = False) -> Path:
    """Render ``folder/report.md`` (written by ``learnrecon benchmark``) to ``out`` (default
    ``folder/report.html``), its figures embedded; returns the path written.

    Raises :class:`DataFileError` if ``folder`` holds no ``report.md``, if a figure it links is missing or lies
    outside ``folder``, or if ``out`` exists and ``overwrite`` is False. Nothing is written on error.
    """
    import markdown

    folder = Path(folder)
    source = folder / "report.md"
    if not source.is_file():
        what = "does not exist" if not folder.exists() else "holds no report.md (is it a benchmark folder?)"
        raise DataFileError(f"{folder} {what}; run 'learnrecon benchmark --out {folder}' first")
    out = check_output_path(folder / "report.html" if out is None else out, overwrite, create_parents=False)
    text = source.read_text(encoding="utf-8")
    body = markdown.markdown(text, extensions=["tables"], output_format="html")
    body = _IMAGE.sub(lambda m: f'<img alt="{m["alt"]}" src="{_data_uri(folder, html.unescape(m["src"]))}"', body)
    title = html.escape(text.splitlines()[0].lstrip("# ").strip() if text.strip() else "learnrecon report")
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    with atomic_path(out, overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def _data_uri(folder: Path, link: str) -> str:
    """The PNG or SVG ``link`` (relative to ``folder``) as a base64 ``data:`` URI."""
    path = (folder / link).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise DataFileError(f"report.md links {link!r}, outside {folder}; only the report's own figures are embedded")
    if not path.is_file():
        raise DataFileError(f"report.md links the figure {link!r}, which is missing from {folder}")
    kind = {".png": "image/png", ".svg": "image/svg+xml"}.get(path.suffix.lower())
    if kind is None:
        raise DataFileError(f"report.md links {link!r}; only PNG and SVG figures are embedded")
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
