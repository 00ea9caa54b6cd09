"""Plain reference implementations of the official layer graphs, for speed and parity comparisons.

These are deliberately unoptimised transcriptions of the official forward passes (same layers, same
order, same state-dict keys); they are not part of the package and never imported by it.
NAFNet's reference is spandrel 0.4.2's copy of the official code (see ``spandrel_nafnet.py``).
"""
