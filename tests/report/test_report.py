"""The HTML report escapes everything that comes from data: a malicious label cannot inject markup."""

from __future__ import annotations

import html.parser

import numpy as np

from responsibility.query import Explanation, InputExplanation
from responsibility.report import explanation_html, write_html

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(name for name, _ in attrs)


def _explanation() -> Explanation:
    item = InputExplanation(
        input=0,
        predicted=1,
        target=1,
        weights=[(f"net.{EVIL}.weight", (1, 2), 0.5)],
        example_ids=np.array([7, 3]),
        scores=np.array([2.0, 1.0], dtype=np.float32),
        labels=np.array([1, 0]),
    )
    return Explanation(items=[item], k=2, sign="abs", rule="sum", layers=[EVIL], unsupported=[EVIL])


def test_malicious_text_is_escaped(tmp_path):
    class_names = ["cat", EVIL]
    page = explanation_html(
        _explanation(),
        class_names=class_names,
        title=EVIL,
        store=f"/runs/{EVIL}.zarr",
        image='grid" onload="alert(1).png',
    )
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags
    assert parser.tags.count("img") == 1  # only the report's own picture; the label's <img> stayed text
    assert not any(a.startswith("on") for a in parser.attrs)  # no event handler got in through an attribute
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    # the data is still shown, as text
    assert page.count("&lt;script&gt;") >= 5
    assert "cat (0)" in page and "<td>7</td>" in page
    out = write_html(_explanation(), tmp_path / "r.html", class_names=class_names)
    assert "&lt;script&gt;" in out.read_text(encoding="utf-8")
