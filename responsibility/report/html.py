"""A self-contained HTML report of an explanation: every piece of text from data is escaped.

Class names, labels, parameter names and file names come from datasets and configs that the report's reader does
not control, so they pass through :func:`html.escape` (quotes included) before they reach the page.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from responsibility.query import Explanation


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _class(value: int | None, class_names: Sequence[str] | None) -> str:
    if value is None:
        return "-"
    if class_names is not None and 0 <= int(value) < len(class_names):
        return f"{_text(class_names[int(value)])} ({int(value)})"
    return _text(value)


def explanation_html(
    explanation: Explanation,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "Most responsible training examples",
    store: str | None = None,
    image: str | None = None,
) -> str:
    """The report as an HTML string; ``image`` is an optional picture file (e.g. an explanation grid) to show."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No script, and nothing may load from elsewhere: the report only shows data.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self'; "
        "style-src 'unsafe-inline'\">",
        f"<title>{_text(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}</style>",
        f"</head><body><h1>{_text(title)}</h1>",
        f"<p>k = {explanation.k}, sign = {_text(explanation.sign)}, layers: {_text(', '.join(explanation.layers))}"
        + (f", store: <code>{_text(store)}</code>" if store else "")
        + "</p>",
    ]
    if image:
        parts.append(f'<p><img src="{_text(image)}" alt="explanation grid" style="max-width:100%"></p>')
    for item in explanation:
        weights = "; ".join(f"{n}[{', '.join(map(str, i))}] = {a:.4g}" for n, i, a in item.weights)
        parts.append(
            f"<h2>Input {item.input}: predicted {_class(item.predicted, class_names)}</h2>"
            f"<p>most activated weight(s): <code>{_text(weights)}</code></p>"
            "<table><tr><th>rank</th><th>training example</th><th>label</th><th>score</th></tr>"
        )
        labels = item.labels if item.labels is not None else [None] * len(item.example_ids)
        for rank, (ex, label, score) in enumerate(zip(item.example_ids, labels, item.scores, strict=True), 1):
            parts.append(
                f"<tr><td>{rank}</td><td>{int(ex)}</td><td>{_class(label, class_names)}</td>"
                f"<td>{float(score):.6g}</td></tr>"
            )
        parts.append("</table>")
    if explanation.unsupported:
        parts.append(f"<p>layers without an activation rule: {_text(', '.join(explanation.unsupported))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(explanation: Explanation, path: str | Path, **kwargs: object) -> Path:
    """Write :func:`explanation_html` to ``path`` (UTF-8)."""
    path = Path(path)
    path.write_text(explanation_html(explanation, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return path
