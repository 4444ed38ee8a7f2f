"""The project's own experiments: datasets, models, a LightningModule, DataModules and the Hydra pipelines behind
``scripts/``. Not part of the library core: nothing outside this package imports it.
"""
