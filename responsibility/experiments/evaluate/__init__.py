"""What ``scripts/evaluate.py`` does with a composed Hydra config: one recorded run, every score on it, metrics.

1. Train ``cfg.model`` on ``cfg.data`` with the :class:`ResponsibilityCallback` (``cfg.callbacks.responsibility``)
   and a :class:`MarginCallback` (epoch margins and checkpoints) on the same run (:mod:`.run`).
2. Rank the training examples for mislabel inspection by the responsibility scores of ``cfg.scores``
   (:mod:`responsibility.analysis.scores`) and by the peers of ``cfg.peers`` (:mod:`responsibility.evaluation.peers`):
   final loss, AUM, last-layer TracIn self-influence, cleanlab's label quality from cross-validated probabilities
   (the only peer that trains extra models: one per fold) (:mod:`.rankings`). Metrics: recall of flipped labels at
   10% / 20% inspected and the area under the detection curve / N.
3. Optionally: sanity metrics of test explanations (``cfg.sanity``) and LDS over models retrained on random subsets
   (``cfg.lds``) (:mod:`.explanations`); the paper's Figure 4 loop (``cfg.fix_labels``: fix the labels of the first
   fraction of a ranking, retrain, test accuracy) (:mod:`.fix_labels`).
4. Write ``results.json``, ``mislabel.csv``, ``results.md``, ``detection.png`` (and ``fix_labels.png``) into
   ``cfg.results_dir``, copies into ``cfg.docs_dir`` when ``cfg.publish``, and ``scores.npz`` (every ranking)
   (:mod:`.report`).
"""

from responsibility.experiments.evaluate.run import evaluate

__all__ = ["evaluate"]
