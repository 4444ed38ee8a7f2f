"""Lightning callbacks of the responsibility project."""

from .responsibility import ResponsibilityCallback

__all__ = ["ResponsibilityCallback"]
