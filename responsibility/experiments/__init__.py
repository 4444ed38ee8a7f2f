"""The project's own experiments: the assets and the Hydra pipelines behind ``scripts/``. Not part of the library
core: nothing outside this package imports it.

- Assets: :mod:`.datasets` (Fashion-MNIST from IDX files, scikit-learn's digits, label noise), :mod:`.datamodules`,
  :mod:`.models` (the paper CNN, LeNet-5, an MLP) and :mod:`.classifier` (the LightningModule).
- Shared by the pipelines: :mod:`.runs` (the one recorded run, fresh fits, predictions, checkpoint replay),
  :mod:`.reporting` (tables, figures, results files), :mod:`.trainers` and :mod:`.job` (how a script runs as a Hydra
  job: logs once, user errors with their fixes as overrides).
- One module or package per script: :mod:`.train` (``scripts/train.py``, the main job), :mod:`.evaluate`,
  :mod:`.paper` and :mod:`.shortcut`.
"""
