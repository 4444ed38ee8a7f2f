"""``responsibility compare`` and ``responsibility explore`` on real runs: output, and one-line errors."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from omegaconf import OmegaConf

from responsibility.cli import main
from responsibility.cli.run_dir import build_model, load_checkpoint


def _test_predictions(run_dir):
    """The run's test predictions, from its checkpoint and its test images (read without the explorer)."""
    from hydra.utils import instantiate

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    OmegaConf.update(cfg, "paths.output_dir", str(run_dir), force_add=True)
    data = instantiate(cfg.data)
    data.setup("fit")
    checkpoint = str(run_dir / "checkpoints" / "last.ckpt")
    model = build_model(cfg, load_checkpoint(checkpoint), checkpoint)
    with torch.no_grad():
        return model(data.test_set.images).argmax(1).numpy(), data.test_set.targets.numpy()


def test_compare_json_and_table(digits_runs, capsys):
    a, b = digits_runs
    assert main(["compare", str(a), str(b), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (pa, y), (pb, _) = _test_predictions(a), _test_predictions(b)
    assert doc["accuracy_a"] == pytest.approx((pa == y).mean()) and doc["accuracy_b"] == pytest.approx((pb == y).mean())
    assert doc["table"] == [
        [int(((pa == y) & (pb == y)).sum()), int(((pa == y) & (pb != y)).sum())],
        [int(((pa != y) & (pb == y)).sum()), int(((pa != y) & (pb != y)).sum())],
    ]
    assert doc["per_class_a"][3] == pytest.approx((pa[y == 3] == 3).mean())
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    t = doc["table"]
    assert f"both right {t[0][0]}, fixed by B {t[1][0]}, broken by B {t[0][1]}, both wrong {t[1][1]}" in out
    assert f"test accuracy {doc['accuracy_a']:.4f}" in out
    assert len([line for line in out.splitlines() if line[:1].isdigit() and len(line.split()) == 5]) == 10


def test_explore_errors_are_one_line(digits_runs, tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["explore", str(digits_runs[0]), "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    expected = f"port {port} on 127.0.0.1 is in use; pass another --port (or 0 for any free port)"
    assert err == f"responsibility explore: error: {expected}"
    assert main(["explore", str(tmp_path), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("responsibility explore: error:") and "not a Hydra run directory" in err
    assert len(err.splitlines()) == 1


def test_explore_serves_from_python(digits_runs):
    import urllib.request

    from responsibility import explore

    server = explore(digits_runs[0], port=0, block=False, open_browser=False)
    try:
        assert server.url.startswith("http://127.0.0.1:") and "token=" in server.url
        base = server.url.split("/?")[0]
        runs = json.loads(urllib.request.urlopen(base + "/api/runs").read())
        assert [r["name"] for r in runs] == ["seed0"] and runs[0]["num_examples"] == 200
        request = urllib.request.Request(base + "/api/runs/0/curation/undo", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 403
    finally:
        server.stop()
