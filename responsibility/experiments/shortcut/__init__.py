"""What ``scripts/shortcut.py`` does with a composed Hydra config: the spurious-correlation (shortcut) test.

1. Load ``cfg.data`` and plant a bright square patch (``cfg.shortcut``: size, corner, value) on a seeded
   ``fraction`` of the training images labelled ``target_class``, and on ``other_fraction`` of the others
   (:mod:`responsibility.evaluation.shortcut`).
2. Train ``cfg.model`` on the patched data with the :class:`ResponsibilityCallback` (``cfg.callbacks.responsibility``)
   and a :class:`MarginCallback` that keeps the epoch-end checkpoints (for TracIn).
3. Take ``cfg.test.n_test`` test images whose label is not the shortcut class, plant the patch on them, and
   measure how often the patch moves the prediction to the shortcut class.
4. Explain the patched test inputs: :func:`responsibility.query.explain` with each entry of
   ``cfg.explain.explainers`` (layers, top_weights), ranked by R (``abs``) and by R_pos − R_neg (``signed``);
   last-layer TracInCP (:mod:`responsibility.evaluation.peers`) as a peer; a random ranking and an "explained class"
   ranking (training examples labelled with the explained class first, random within) as baselines.
5. Score every method per test input against the mask of patched training examples (:mod:`.metrics`): AUPRC over
   all training examples, within the shortcut class and within the other classes, and precision@k; averaged over
   all patched test inputs and over those whose prediction the patch flipped.
6. Write ``results.json``, ``shortcut.csv``, ``results.md``, ``examples.png`` (patched test inputs and their top
   training images per method, patched ones framed in red), ``auprc.png`` (:mod:`.report`) and ``scores.npz`` into
   ``cfg.results_dir``; with ``cfg.publish`` copy all but ``scores.npz`` to ``cfg.docs_dir``.

Steps 1-6 run in :func:`~responsibility.experiments.shortcut.run.run_shortcut`.
"""

from responsibility.experiments.shortcut.metrics import shortcut_metrics
from responsibility.experiments.shortcut.report import PUBLISHED
from responsibility.experiments.shortcut.run import patch_value, run_shortcut

__all__ = ["PUBLISHED", "patch_value", "run_shortcut", "shortcut_metrics"]
