"""A self-contained HTML report of an explanation: thumbnails embedded as ``data:`` URIs, class names, every piece of
text from data escaped.

Class names, labels, parameter names and file names come from datasets and configs that the report's reader does
not control, so they pass through :func:`html.escape` (quotes included) before they reach the page. The page runs
no script and loads nothing from elsewhere (its Content-Security-Policy allows only inline styles and images).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from responsibility.query import Explanation, InputExplanation
from responsibility.report.thumbnails import png_data_uri

_MEANING = {
    "contribution": "Score: how much the training example's updates raised the explained class's score for this "
    "input (negative: lowered it).",
    "most_activated": "Score: the responsibility R of the input's most activated weight(s) (the paper's rule).",
}


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _class(value: int | None, class_names: Sequence[str] | None) -> str:
    if value is None:
        return "-"
    if class_names is not None and 0 <= int(value) < len(class_names):
        return f"{_text(class_names[int(value)])} ({int(value)})"
    return _text(value)


def _thumb(images: Any, index: int, alt: str) -> str:
    if images is None or not 0 <= index < len(images):
        return ""
    return f'<img class="t" src="{png_data_uri(images[index])}" alt="{_text(alt)}">'


def _heading(item: InputExplanation, class_names: Sequence[str] | None) -> str:
    source = f" (source index {item.source})" if item.source is not None else ""
    parts = [f"Input {item.input}{source}"]
    if item.true_label is not None:
        parts.append(f"true {_class(item.true_label, class_names)}")
    parts.append(f"predicted {_class(item.predicted, class_names)}")
    if item.target is not None and item.target != item.predicted:
        parts.append(f"explaining {_class(item.target, class_names)}")
    return ", ".join(parts)


def explanation_html(
    explanation: Explanation,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "Most responsible training examples",
    store: str | None = None,
    image: str | None = None,
    inputs: Any = None,
    train_images: Any = None,
) -> str:
    """The report as an HTML string.

    ``inputs`` (the explained batch) and ``train_images`` (the training set, indexed by example id) add thumbnails;
    ``image`` is an optional picture file (e.g. an explanation grid) to show.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No script, and nothing may load from elsewhere: the report only shows data.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>{_text(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}"
        "img.t{width:56px;height:56px;image-rendering:pixelated;vertical-align:middle}</style>",
        f"</head><body><h1>{_text(title)}</h1>",
        f"<p>k = {explanation.k}, method = {_text(explanation.method)}, sign = {_text(explanation.sign)}, "
        f"layers: {_text(', '.join(explanation.layers))}"
        + (f", store: <code>{_text(store)}</code>" if store else "")
        + "</p>",
        f"<p>{_text(_MEANING.get(explanation.method, ''))}</p>",
    ]
    if image:
        parts.append(f'<p><img src="{_text(image)}" alt="explanation grid" style="max-width:100%"></p>')
    for item in explanation:
        parts.append(f"<h2>{_heading(item, class_names)}</h2>")
        thumb = _thumb(inputs, item.input, f"input {item.input}")
        if thumb:
            parts.append(f"<p>{thumb}</p>")
        if item.weights:
            weights = "; ".join(f"{n}[{', '.join(map(str, i))}] = {a:.4g}" for n, i, a in item.weights)
            parts.append(f"<p>most activated weight(s): <code>{_text(weights)}</code></p>")
        labels = item.labels if item.labels is not None else [None] * len(item.example_ids)
        rows = [
            (rank, int(ex), label, float(score))
            for rank, (ex, label, score) in enumerate(zip(item.example_ids, labels, item.scores, strict=True), 1)
            if score != 0
        ]
        if not rows:
            parts.append("<p>No training example changed the weights that explain this input (every score is 0).</p>")
            continue
        image_col = "<th>image</th>" if train_images is not None else ""
        parts.append(f"<table><tr><th>rank</th>{image_col}<th>training example</th><th>label</th><th>score</th></tr>")
        for rank, ex, label, score in rows:
            cell = f"<td>{_thumb(train_images, ex, f'training example {ex}')}</td>" if train_images is not None else ""
            parts.append(
                f"<tr><td>{rank}</td>{cell}<td>{ex}</td><td>{_class(label, class_names)}</td><td>{score:.6g}</td></tr>"
            )
        parts.append("</table>")
    if explanation.unsupported:
        parts.append(
            f"<p>layers this method does not explain (skipped): {_text(', '.join(explanation.unsupported))}</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(explanation: Explanation, path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`explanation_html` to ``path`` (UTF-8)."""
    path = Path(path)
    path.write_text(explanation_html(explanation, **kwargs), encoding="utf-8")
    return path
