"""Experiment side: Lightning data modules and the classifier module used by ``scripts/train.py``."""

from training.classifier import ImageClassifier
from training.datamodules import DigitsDataModule, FashionMNISTDataModule, ImageDataModule

__all__ = ["DigitsDataModule", "FashionMNISTDataModule", "ImageClassifier", "ImageDataModule"]
