"""Drift monitoring: reference profiles, streaming histograms, PSI.

Needs the compiled kernels in runtime._native (``pip install -e .``).
"""

from __future__ import annotations

from .histogram import Histogram
from .kernels import chi2, js, psi
from .profile import FeatureProfile, Profile

__all__ = ["FeatureProfile", "Histogram", "Profile", "chi2", "js", "psi"]
