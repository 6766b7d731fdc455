"""Grids that map the Parametric Memory Law: full factorials over rank × length (× data × model).

Values are plain data, so sweep validation can build the TrialConfig of every grid point before
Ray starts. The paper grid follows docs/science.md §4; the CPU grids are sized so that a tiny model
with the paper's single-layer placement leaves most points unsaturated (final loss above ln 2),
which the fit needs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Mapping


@dataclass(frozen=True)
class GridSpace:
    """A full factorial: every combination of the axes' values is one trial."""

    axes: Mapping[str, tuple[Any, ...]]
    description: str = ""
    kind: str = "grid"

    def points(self) -> Iterator[dict[str, Any]]:
        keys = list(self.axes)
        for values in itertools.product(*(self.axes[k] for k in keys)):
            yield dict(zip(keys, values))

    def __len__(self) -> int:
        n = 1
        for values in self.axes.values():
            n *= len(values)
        return n

    def with_axes(self, overrides: Mapping[str, Any]) -> GridSpace:
        """Replace or add axes (a scalar becomes a one-value axis)."""
        axes = dict(self.axes)
        for key, values in overrides.items():
            axes[key] = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        return GridSpace(axes, self.description)


PAPER_RANKS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
PAPER_LENGTHS = (50, 100, 200, 500, 1000, 2000, 5000, 10000)
# The paper's own Qwen3-8B long-context SFT sweep on random tokens, 16 ranks x 13 lengths = 208 trials, as the
# official repository's docs/long_context_benchmark.md lists it (github.com/zjunlp/ParametricMemoryLaw; its
# Llama-3.1-8B sweep stops at 7000 tokens). Meant for search.kind: adaptive (docs/paper_scale.md).
PAPER_FULL_RANKS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 24, 32, 48, 64, 128, 256, 512)
PAPER_FULL_LENGTHS = (50, 100, 200, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 10000)

GRIDS: dict[str, GridSpace] = {
    "law_grid_paper": GridSpace({"adapter.rank": PAPER_RANKS, "data.target_tokens": PAPER_LENGTHS},
                                "the paper's long-context grid: ranks 1-512 x lengths 50-10k"),
    "law_grid_paper_full": GridSpace({"adapter.rank": PAPER_FULL_RANKS, "data.target_tokens": PAPER_FULL_LENGTHS},
                                     "the paper's own Qwen3-8B grid: 16 ranks 1-512 x 13 lengths 50-10k (208 trials)"),
    "law_grid_cpu": GridSpace({"adapter.rank": (1, 2, 4, 8), "data.target_tokens": (128, 256, 512, 1024)},
                              "a tiny-model law map that runs on 2 CPU cores in minutes"),
    "law_grid_smoke": GridSpace({"adapter.rank": (1, 2, 4), "data.target_tokens": (32, 64)},
                                "six short trials: for tests"),
    "density_grid_cpu": GridSpace({"adapter.rank": (2, 4, 8), "data.target_tokens": (256, 512),
                                   "data.random_share": (0.0, 0.5, 1.0)},
                                  "semantic density: text with 0/50/100 % random tokens"),
}
