"""Attribution quality: the field's metrics, peer methods measured on the same runs, and the shortcut test."""

from responsibility.evaluation.metrics import (
    auprc,
    class_detection,
    detection_curve,
    expected_random_jaccard,
    linear_datamodeling_score,
    mislabel_auc,
    model_randomization,
    randomization_test,
    rankdata,
    recall_at,
    shuffled_jaccard,
    spearman,
    top1_agreement,
    topk_cardinality,
    topk_jaccard,
)

__all__ = [
    "auprc",
    "class_detection",
    "detection_curve",
    "expected_random_jaccard",
    "linear_datamodeling_score",
    "mislabel_auc",
    "model_randomization",
    "randomization_test",
    "rankdata",
    "recall_at",
    "shuffled_jaccard",
    "spearman",
    "top1_agreement",
    "topk_cardinality",
    "topk_jaccard",
]
