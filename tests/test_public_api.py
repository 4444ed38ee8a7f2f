"""The public API: every import path the documentation shows works, only `responsibility` is installed, and a
user's own `callbacks.py` or `training.py` in the working directory changes nothing."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FROM_IMPORT = re.compile(r"^\s*from (responsibility[\w.]*) import ([\w, ()]+?)\s*(?:#.*)?$", re.M)
PLAIN_IMPORT = re.compile(r"^\s*import (responsibility[\w.]*)", re.M)
DOTTED = re.compile(r"`(responsibility(?:\.\w+)+)`")


def documented_imports() -> list[tuple[str, str | None]]:
    """(module, name) for every `from responsibility... import name` and `import responsibility...` in the docs."""
    found: set[tuple[str, str | None]] = set()
    for doc in DOCS:
        text = doc.read_text()
        for module, names in FROM_IMPORT.findall(text):
            for name in names.replace("(", "").replace(")", "").split(","):
                if name.strip():
                    found.add((module, name.strip().split(" as ")[0]))
        found.update((module, None) for module in PLAIN_IMPORT.findall(text))
        for dotted in DOTTED.findall(text):  # `responsibility.analysis.groups.interclass_matrix` in prose
            found.add(_split_dotted(dotted))
    return sorted(found, key=lambda t: (t[0], t[1] or ""))


def _split_dotted(dotted: str) -> tuple[str, str | None]:
    """(longest importable module prefix, the attribute after it, if any)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        rest = parts[cut:]
        if len(rest) > 1:  # e.g. Class.method: check the class here, the method below
            return module, ".".join(rest)
        return module, rest[0] if rest else None
    return dotted, None


def test_the_docs_show_imports():
    assert ("responsibility", "ResponsibilityCallback") in documented_imports()


@pytest.mark.parametrize("module, name", documented_imports())
def test_documented_import_works(module, name):
    obj = importlib.import_module(module)
    for attr in (name or "").split(".") if name else ():
        obj = getattr(obj, attr)
    assert obj is not None


def test_top_level_api():
    import responsibility

    for name in responsibility.__all__:
        assert getattr(responsibility, name) is not None, name
    # The same objects as in their subpackages: one definition each.
    from responsibility.callbacks.responsibility import ResponsibilityCallback

    from responsibility.analysis.scores import label_push
    from responsibility.store import ResponsibilityStore

    assert responsibility.label_push is label_push
    assert responsibility.ResponsibilityCallback is ResponsibilityCallback
    assert responsibility.ResponsibilityStore is ResponsibilityStore


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import_needs_no_lightning_matplotlib_dask_or_hydra(tmp_path):
    out = _python(
        "import sys, responsibility\n"
        "heavy = [m for m in ('lightning', 'matplotlib', 'dask', 'hydra') if m in sys.modules]\n"
        "print(heavy)",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_users_callbacks_and_training_modules_change_nothing(tmp_path):
    # Common names in Lightning projects, next to the user's script: they must not shadow anything of ours.
    (tmp_path / "callbacks.py").write_text("raise RuntimeError('the user callbacks.py was imported')\n")
    (tmp_path / "training.py").write_text("raise RuntimeError('the user training.py was imported')\n")
    out = _python(
        "from responsibility import ResponsibilityCallback, ResponsibilityStore, explain\n"
        "import responsibility.callbacks, responsibility.cli, responsibility.experiments.train\n"
        "print(ResponsibilityCallback.__module__)",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "responsibility.callbacks.responsibility"


def test_the_wheel_installs_only_responsibility(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("responsibility-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"responsibility"}
    # The callbacks folder is shipped inside the package, with the type marker.
    assert "responsibility/callbacks/responsibility.py" in names
    assert "responsibility/py.typed" in names
