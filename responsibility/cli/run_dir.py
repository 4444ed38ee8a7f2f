"""What a Hydra run directory holds for offline work: its composed config, checkpoint, model, data and inputs."""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from responsibility.errors import StoreMismatchError


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


def store_location(text: str) -> str:
    """A store's path or URL as given, or for a Hydra run directory the store its callback recorded."""
    from responsibility.store.location import is_url

    path = Path(text)
    if is_url(text) or (path / "zarr.json").exists() or not (path / ".hydra" / "config.yaml").is_file():
        return text
    return default_store(run_config(argparse.Namespace(run_dir=text, config=None))) or text


def data_module(cfg: Any) -> Any:
    """The run's data module, configured but not set up (no data read yet): class names, scaling, shapes."""
    from hydra.utils import instantiate

    return instantiate(cfg.data)


def load_checkpoint(checkpoint: str) -> dict[str, Any]:
    """A Lightning checkpoint, read without unpickling code (``weights_only``)."""
    import torch

    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean the same to the user
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"cannot read checkpoint {checkpoint}: {type(exc).__name__}: {first}") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{checkpoint} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def build_model(cfg: Any, ckpt: dict[str, Any], checkpoint: str) -> Any:
    """The configured model with the checkpoint's weights, in eval mode."""
    from hydra.utils import instantiate

    model = instantiate(cfg.model)
    state = ckpt["state_dict"]
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


def check_checkpoint_store(ckpt: dict[str, Any], checkpoint: str, store_path: str, store_steps: int) -> None:
    """Refuse a checkpoint recorded with another store; warn when it is from another step than the store's end.

    The callback saves its store path and committed step count in every checkpoint. A checkpoint of another run
    of the same model loads fine but its weights do not belong to the store's R.
    """
    states = [s for s in (ckpt.get("callbacks") or {}).values() if isinstance(s, dict) and "store" in s]
    if not states:
        return  # not recorded with the callback (e.g. saved by hand): nothing to compare
    recorded = [(str(s["store"]), int(s.get("steps", -1))) for s in states]
    here = Path(store_path).resolve()
    mine = [(p, n) for p, n in recorded if Path(p).resolve() == here]
    if not mine:
        elsewhere = [p for p, _ in recorded if Path(p).exists()]
        if elsewhere:
            raise StoreMismatchError(
                f"checkpoint {checkpoint} was trained while recording {elsewhere[0]}, not {store_path}: "
                f"pass that run's store (--store {elsewhere[0]}) or this store's own checkpoint"
            )
        mine = recorded  # the run directory moved: its recorded path is gone, compare the step counts
    steps = mine[0][1]
    if steps > store_steps:
        raise StoreMismatchError(
            f"checkpoint {checkpoint} is from step {steps} but the store {store_path} holds {store_steps} steps: "
            "they come from different runs"
        )
    if steps != store_steps:
        warnings.warn(
            f"checkpoint {checkpoint} is from step {steps} of the {store_steps} recorded steps: the model is "
            f"explained with R of all {store_steps} steps",
            stacklevel=2,
        )


@dataclass
class Inputs:
    """Inputs to explain: the batch, and where known each input's index in its original split and true label."""

    x: Any
    description: str
    sources: np.ndarray | None = None
    labels: np.ndarray | None = None
    positions: list[int] | None = None  # what the user named each input by (test-set positions), if not its row


def load_inputs(text: str, cfg: Any, dm: Any) -> Inputs:
    """``FILE.npy`` / ``FILE.pt`` (a batch), or ``test:0,5,9`` (positions in the run's test set)."""
    import torch

    if text.startswith("test:"):
        try:
            idx = [int(i) for i in text[len("test:") :].split(",") if i.strip()]
        except ValueError as exc:
            raise ValueError(f"--inputs {text!r}: expected test:I,J,... with integer indices") from exc
        if not idx:
            raise ValueError("--inputs test: lists no index")
        dm.setup("fit")
        test = dm.test_set
        n = len(test)
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise IndexError(
                f"test indices {bad} outside the test set of {n} images (the run's subset of the test split)"
            )
        sources = np.asarray(test.source_indices)[idx]
        return Inputs(
            test.images[idx],
            f"positions {idx} of the run's test set ({n} images, a seeded subset of the test split); "
            "source = index in the original test split",
            sources,
            test.targets[idx].numpy(),
            idx,
        )
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"inputs file {path} does not exist")
    if path.suffix == ".npy":
        try:
            x = torch.from_numpy(np.load(path, allow_pickle=False))
        except ValueError as exc:  # object arrays, or not an .npy at all
            raise ValueError(f"cannot read inputs {path}: {str(exc).splitlines()[0]}") from exc
    elif path.suffix == ".pt":
        try:
            x = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # e.g. a pickled object that weights_only refuses to build
            raise ValueError(f"cannot read inputs {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{path} must hold one tensor (a batch of inputs), got {type(x).__name__}")
    else:
        raise ValueError(f"--inputs must be a .npy or .pt file or test:I,J,..., got {text!r}")
    return Inputs(preprocess(x, dm, str(path)), f"the {len(x)} inputs of {path}")


def preprocess(x: Any, dm: Any, where: str) -> Any:
    """A batch from a file, as the run's model takes it.

    Integer arrays are raw pixels: scaled and normalised as the run's data module does. Float arrays must already
    be preprocessed. ``(N, H, W)`` gains the channel axis of single-channel data; any other shape is refused.
    """
    import torch

    if not all(hasattr(dm, a) for a in ("max_value", "normalize", "in_channels", "image_size")):
        return x  # not an image data module of this project: the inputs are used as given
    raw = not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
    if raw:
        x = x.float() / float(dm.max_value)
        if dm.normalize is not None:
            x = (x - dm.normalize[0]) / dm.normalize[1]
    else:
        x = x.float()
        if dm.normalize is None and len(x) and float(x.abs().max()) > 1.0 + 1e-6:
            raise ValueError(
                f"{where}: float inputs must be scaled like the training images ([0, 1]), got values up to "
                f"{float(x.abs().max()):.4g}; save raw pixels as integers (uint8) to have the run's scaling applied"
            )
    if x.dim() == 3 and dm.in_channels == 1:
        x = x.unsqueeze(1)
    want = (dm.in_channels, dm.image_size, dm.image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise ValueError(
            f"{where}: inputs of shape {tuple(x.shape)}; the run's model takes (N, {', '.join(map(str, want))})"
            + (" or (N, H, W)" if dm.in_channels == 1 else "")
        )
    return x


def parse_target(text: str) -> Any:
    """``predicted`` (None), ``any``, a class index, or one class index per input (``I,J,...``)."""
    if text == "predicted":
        return None
    if text == "any":
        return text
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise ValueError(
            f"--target must be 'predicted', 'any', a class index or one per input (I,J,...), got {text!r}"
        ) from exc
    return values[0] if len(values) == 1 else values


def class_names(dm: Any, args: argparse.Namespace) -> list[str] | None:
    """The run's class names: from its data module, else class_names.json beside its store."""
    names = getattr(dm, "class_names", None)
    if names:
        return [str(n) for n in names]
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is None or not (run_dir / "class_names.json").is_file():
        return None
    saved = json.loads((run_dir / "class_names.json").read_text())
    return [str(n) for n in saved] if isinstance(saved, list) else None
