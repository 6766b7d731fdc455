"""The Parametric Memory Law as pure math: ΔL = C·r^α·ℓ^(−β) + b, fitted, judged and used.

Imports numpy, scipy and trainables' pure modules only: no Ray, no torch, no records (callers hand
it rows), so it is tested in milliseconds. Each module's docstring carries the notation of the
math it holds.
"""
