"""Detector families. Each module registers itself; nothing outside this package branches on a family name."""

from udfd.detectors.base import Detector, ExplainTarget, families, family_for, get_family, register

__all__ = ["Detector", "ExplainTarget", "families", "family_for", "get_family", "register"]
