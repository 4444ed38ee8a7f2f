"""Lightning callbacks, installed as ``responsibility.callbacks`` (this folder is mapped there by pyproject.toml)."""

from responsibility.callbacks.margins import MarginCallback
from responsibility.callbacks.responsibility import ResponsibilityCallback

__all__ = ["MarginCallback", "ResponsibilityCallback"]
