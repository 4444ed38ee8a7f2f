"""What a Hydra run directory holds for offline work: its composed config, checkpoint, model and test inputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def run_config(args: argparse.Namespace) -> Any:
    """The run's composed Hydra config, with ``paths.output_dir`` pointing at the run directory."""
    from omegaconf import OmegaConf

    if args.run_dir:
        path = Path(args.run_dir) / ".hydra" / "config.yaml"
        if not path.exists():
            raise FileNotFoundError(f"{args.run_dir} is not a Hydra run directory (no .hydra/config.yaml)")
    else:
        path = Path(args.config)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
    cfg = OmegaConf.load(path)
    if "model" not in cfg:
        raise ValueError(f"{path} has no 'model' section; pass the run's .hydra/config.yaml")
    # ${hydra:runtime.output_dir} only resolves inside a Hydra app: the run directory is what it was.
    run_dir = Path(args.run_dir) if args.run_dir else path.parent.parent
    OmegaConf.update(cfg, "paths.output_dir", str(run_dir), force_add=True)
    return cfg


def default_store(cfg: Any) -> str | None:
    entry = (cfg.get("callbacks") or {}).get("responsibility")
    return str(entry.store) if entry and "store" in entry else None


def build_model(cfg: Any, checkpoint: str) -> Any:
    import torch
    from hydra.utils import instantiate

    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    model = instantiate(cfg.model)
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean the same to the user
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"cannot read checkpoint {checkpoint}: {type(exc).__name__}: {first}") from exc
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint} is not a Lightning checkpoint (no state_dict)")
    own = model.state_dict()
    problems = [f"{k} missing" for k in own if k not in state]
    problems += [f"{k} unexpected" for k in state if k not in own]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if problems:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit the configured model: "
            + "; ".join(problems[:4])
            + ("; ..." if len(problems) > 4 else "")
        )
    model.load_state_dict(state)
    return model.eval()


def load_inputs(text: str, cfg: Any) -> Any:
    """``FILE.npy`` / ``FILE.pt`` (a batch tensor), or ``test:0,5,9`` (test-set images of the run's data)."""
    import torch

    if text.startswith("test:"):
        try:
            idx = [int(i) for i in text[len("test:") :].split(",") if i.strip()]
        except ValueError as exc:
            raise ValueError(f"--inputs {text!r}: expected test:I,J,... with integer indices") from exc
        if not idx:
            raise ValueError("--inputs test: lists no index")
        from hydra.utils import instantiate

        data = instantiate(cfg.data)
        data.setup("fit")
        n = len(data.test_set)
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise IndexError(f"test indices {bad} outside the test set of {n} images")
        return data.test_set.images[idx]
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"inputs file {path} does not exist")
    if path.suffix == ".npy":
        x = torch.from_numpy(np.load(path, allow_pickle=False))
    elif path.suffix == ".pt":
        try:
            x = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # e.g. a pickled object that weights_only refuses to build
            raise ValueError(f"cannot read inputs {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{path} must hold one tensor (a batch of inputs), got {type(x).__name__}")
    else:
        raise ValueError(f"--inputs must be a .npy or .pt file or test:I,J,..., got {text!r}")
    return x.float()


def parse_target(text: str) -> str | int | None:
    if text == "predicted":
        return text
    if text == "none":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise ValueError(f"--target must be 'predicted', 'none' or a class index, got {text!r}") from exc


def class_names(cfg: Any, args: argparse.Namespace) -> list[str] | None:
    """Class names saved by the training run beside its store (class_names.json), if any."""
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is None or not (run_dir / "class_names.json").is_file():
        return None
    names = json.loads((run_dir / "class_names.json").read_text())
    return [str(n) for n in names] if isinstance(names, list) else None
