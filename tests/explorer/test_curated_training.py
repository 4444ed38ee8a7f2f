"""Training with a curation (``scripts/train.py curation=PATH``) really uses it: new labels, removed ids skipped,
per-example loss weights; each checked against an independent reading of the curation file (plain JSON, replayed
here by hand)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.nn import functional as F

from responsibility.cli.run_dir import run_config
from responsibility.curation import APPLIED_FILE_NAME
from responsibility.errors import CurationError
from responsibility.experiments.classifier import ImageClassifier
from responsibility.experiments.datamodules import DigitsDataModule
from responsibility.experiments.models import PaperCNN
from responsibility.store import ResponsibilityStore


def config_of(run_dir, **changes):
    cfg = run_config(argparse.Namespace(run_dir=str(run_dir), config=None))
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def _read_by_hand(path, n):
    """The curation's effect, from the JSON alone: (labels by id, removed ids, weights by id)."""
    labels, removed, weights = {}, set(), {}
    for change in json.loads(path.read_text())["changes"]:
        for i in change["ids"]:
            if change["action"] == "relabel":
                labels[i] = change["label"]
            elif change["action"] == "remove":
                removed.add(i)
            elif change["action"] == "restore":
                removed.discard(i)
            elif change["action"] == "reweight":
                weights[i] = change["factor"]
    return labels, removed, weights


def test_the_trained_run_used_the_curation(curated):
    base, path, run = curated
    labels, removed, weights = _read_by_hand(path, 200)
    original = ResponsibilityStore.open(base / "responsibility.zarr")
    store = ResponsibilityStore.open(run / "responsibility.zarr")
    expected = original.labels.copy()
    for i, label in labels.items():
        expected[i] = label
    assert removed == {0, 7, 11} and weights == {20: 4.0, 21: 4.0}
    assert store.num_examples == 200 and np.array_equal(store.labels, expected)  # ids kept, labels as curated
    seen = np.bincount(store.membership()[0], minlength=200)
    epochs = len(np.unique(store.meta()[:, 1]))
    assert seen[sorted(removed)].tolist() == [0, 0, 0]  # in no batch
    assert np.all(np.delete(seen, sorted(removed)) == epochs)  # every other example once per epoch
    assert json.loads((run / APPLIED_FILE_NAME).read_text()) == json.loads(path.read_text())
    assert OmegaConf.load(run / ".hydra" / "config.yaml").curation == str(path)


def test_the_data_module_serves_labels_weights_and_kept_ids(curated):
    base, path, _ = curated
    labels, removed, weights = _read_by_hand(path, 200)
    data = instantiate(config_of(base, **{"data.shuffle": False}).data, curation=str(path))
    data.setup("fit")
    kept = [i for i in range(200) if i not in removed]
    loader = data.train_dataloader()
    assert list(loader.sampler) == kept
    xs, ys, ws = (torch.cat(parts) for parts in zip(*loader, strict=True))
    original = instantiate(config_of(base).data)
    original.setup("fit")
    expected = original.train_set.targets.numpy().copy()
    for i, label in labels.items():
        expected[i] = label
    assert torch.equal(xs, original.train_set.images[kept])
    assert ys.tolist() == expected[kept].tolist()
    assert ws.tolist() == [weights.get(i, 1.0) for i in kept]
    clean = original.train_set.clean_targets.numpy()
    assert data.train_set.flipped_ids.tolist() == np.flatnonzero(expected != clean).tolist()
    # Shuffled: the uncurated run's order from the same seed, less the removed ids.
    shuffled = instantiate(config_of(base).data, curation=str(path))
    shuffled.setup("fit")
    torch.manual_seed(3)
    order = list(original.train_dataloader().sampler)
    torch.manual_seed(3)
    assert list(shuffled.train_dataloader().sampler) == [i for i in order if i not in removed]
    assert sorted(order) == list(range(200))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_the_loss_weights_each_example():
    torch.manual_seed(0)
    model = ImageClassifier(PaperCNN(1, 8, 3, conv_channels=2, hidden=4))
    x, y, w = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0]), torch.tensor([1.0, 4.0, 1.0, 0.5, 2.0])
    logits = model(x).double()
    by_hand = sum(float(w[i]) * -torch.log_softmax(logits[i], 0)[y[i]].item() for i in range(5)) / 5
    assert model.training_step((x, y, w), 0).item() == pytest.approx(by_hand, rel=1e-5)
    assert model.training_step((x, y), 0).item() == pytest.approx(F.cross_entropy(model(x), y).item())


def test_a_curation_of_other_data_is_refused_before_training(curated, tmp_path):
    base, path, _ = curated
    doc = json.loads(path.read_text())
    doc["labels_sha256"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(doc))
    data = instantiate(config_of(base).data, curation=str(tmp_path / "other.json"))
    with pytest.raises(CurationError, match="another dataset"):
        data.setup("fit")
    (tmp_path / "bad.json").write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(CurationError, match="version 99"):
        DigitsDataModule(curation=tmp_path / "bad.json")
