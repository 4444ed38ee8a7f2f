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


def _decode_png(uri: str) -> np.ndarray:
    """Pixels of an 8-bit grey/RGB PNG data URI written with filter 0 (what the report writes), decoded by hand."""
    import base64
    import struct
    import zlib

    data = base64.b64decode(uri.removeprefix("data:image/png;base64,"))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = 3 if colour == 2 else 1
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + width * channels)
    assert depth == 8 and np.all(raw[:, 0] == 0)
    pixels = raw[:, 1:].reshape(height, width, channels)
    return pixels[..., 0] if channels == 1 else pixels


def test_thumbnails_are_embedded_pngs_of_the_images():
    import re

    rng = np.random.default_rng(0)
    inputs = rng.random((1, 1, 4, 5)).astype(np.float32)
    train = rng.random((8, 3, 4, 5)).astype(np.float32)  # RGB training images, channels first
    page = explanation_html(_explanation(), class_names=["cat", EVIL], inputs=inputs, train_images=train)
    uris = re.findall(r'<img class="t" src="(data:image/png;base64,[A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 1 + 2  # the input, then its two examples (ids 7 and 3)

    def stretched(a):  # min-max to 0..255, by hand
        return np.round((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)

    np.testing.assert_array_equal(_decode_png(uris[0]), stretched(inputs[0, 0]))
    np.testing.assert_array_equal(_decode_png(uris[1]), stretched(np.moveaxis(train[7], 0, -1)))
    np.testing.assert_array_equal(_decode_png(uris[2]), stretched(np.moveaxis(train[3], 0, -1)))
    assert "Content-Security-Policy" in page and "img-src 'self' data:" in page


def test_heading_says_true_label_source_and_zero_scores():
    item = InputExplanation(
        input=0,
        predicted=1,
        target=0,
        weights=[],
        example_ids=np.array([4, 5]),
        scores=np.array([0.0, 0.0], dtype=np.float32),
        labels=np.array([1, 0]),
        source=1234,
        true_label=0,
    )
    page = explanation_html(Explanation([item], k=2, sign="net", rule="sum", layers=["fc"]), class_names=["a", "b"])
    assert "Input 0 (source index 1234), true a (0), predicted b (1), explaining a (0)" in page
    assert "No training example changed the weights that explain this input" in page and "<td>4</td>" not in page
