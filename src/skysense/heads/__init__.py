"""Task heads on top of SkySense features: classification (linear, attentive)."""

from skysense.heads.classification import AttentiveHead, LinearHead, build_classification_head

__all__ = ["AttentiveHead", "LinearHead", "build_classification_head"]
