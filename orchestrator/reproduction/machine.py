"""The machine a figure was measured on, in words (for docs/benchmarks.md and docs/reproduction.md).

The facts are read in one place, orchestrator/experiment/provenance.py, which also records them for
every run of an experiment; this module names the ones a figure's caption shows.
"""

from __future__ import annotations

from orchestrator.experiment.provenance import cpu_model

__all__ = ["cpu_model"]
