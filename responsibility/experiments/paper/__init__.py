"""What ``scripts/paper.py`` does with a composed Hydra config: the paper's remaining experiments on recorded runs.

Khadivpour & Guzdial (arXiv 2209.03433), on the paper CNN trained with the :class:`ResponsibilityCallback`
(:mod:`.run`), one module per experiment:

- ``interclass`` (appendix A.2, :mod:`.interclass`): the inter-class responsibility matrix of the output layer and
  its diagonal dominance, raw and column-normalised, per sign.
- ``misclassified`` (A.4, :mod:`.misclassified`): the misclassified test inputs and their most responsible training
  examples; the fraction whose top-1 example carries the (wrong) predicted label, the true label, or another one.
- ``seeds`` (A.5, :mod:`.seeds`): the same data trained with several seeds; the overlap of the top-k sets that
  explain the same test inputs against a random and a same-prediction baseline.
- ``evaluator`` (Section 4, :mod:`.evaluator`): a secondary "evaluator" CNN learns to predict the actor from a test
  input alone or stacked with one explanation image (the most responsible or the nearest training example).

Explanations come from :func:`responsibility.query.explain` (``cfg.explain``: layers, target = the predicted
class) through :mod:`.explanations`. ``sign`` ranks training examples by R (``abs``), R_pos, R_neg, or ``signed`` =
R_pos − R_neg of the same chosen weights: with batch size 1 that is the net change an example made to the weight,
the quantity the authors' released code takes the argmax of.

Every experiment writes CSV, PNG, and its part of ``results.json`` / ``results.md`` into ``cfg.results_dir``;
``cfg.publish`` copies them to ``cfg.docs_dir``.
"""

from responsibility.experiments.paper.evaluator import EvaluatorCNN, evaluator_experiment, train_evaluator
from responsibility.experiments.paper.explanations import (
    EXPLAIN_SIGNS,
    nearest_examples,
    penultimate_features,
    responsible_examples,
)
from responsibility.experiments.paper.interclass import interclass_experiment
from responsibility.experiments.paper.misclassified import misclassified_experiment
from responsibility.experiments.paper.run import EXPERIMENTS, run_paper, train_recorded
from responsibility.experiments.paper.seeds import seeds_experiment

__all__ = [
    "EXPERIMENTS",
    "EXPLAIN_SIGNS",
    "EvaluatorCNN",
    "evaluator_experiment",
    "interclass_experiment",
    "misclassified_experiment",
    "nearest_examples",
    "penultimate_features",
    "responsible_examples",
    "run_paper",
    "seeds_experiment",
    "train_evaluator",
    "train_recorded",
]
