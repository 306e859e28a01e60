"""One self-contained HTML page per run: tables and every picture embedded (no server, no files)."""
from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from ood_bench.utils import atomic

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border-bottom:1px solid #e5e5e5;padding:3px 8px;text-align:right;white-space:nowrap}
.note{font-size:.8em;color:#444;max-width:900px}
th:first-child,td:first-child{text-align:left}
.prov{color:#666;font-size:.8em}.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figcaption{font-size:.75em;color:#555}img{max-width:560px}
"""


def table_html(df: pd.DataFrame, index: bool = False) -> str:
    """HTML of a table of strings; cells may carry <b> (already escaped elsewhere)."""
    return df.to_html(index=index, escape=False, border=0, na_rep="–")


def image_html(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_report(path: Path, title: str, provenance: list[str],
                 sections: list[tuple[str, str]], figures: list[tuple[str, list[tuple[Path, str]]]]) -> Path:
    """``sections``: (heading, html) in order; ``figures``: (heading, [(png, caption), …])."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.append("<div class='prov'>" + "<br>".join(html.escape(p) for p in provenance) + "</div>")
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    for heading, images in figures:
        if images:
            parts.append(f"<h2>{html.escape(heading)}</h2><div class='grid'>"
                         + "".join(image_html(p, c) for p, c in images) + "</div>")
    parts.append("</body></html>")
    return atomic.write_text(path, "\n".join(parts))


def escape_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out.columns = [html.escape(str(c)) for c in out.columns]
    out.index = [html.escape(str(i)) for i in out.index]
    return out.map(lambda v: html.escape(str(v)))
