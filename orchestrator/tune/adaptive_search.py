"""AdaptiveLawSearcher: the Ray Tune glue around orchestrator.law.adaptive_design (law-guided adaptive sweeps).

    suggest(trial_id)            -> {"adapter.rank": r, "data.target_tokens": ℓ, **fixed axes}
                                    | None (wait for results) | Searcher.FINISHED (stopping rule)
    on_trial_complete(id, result, error)   records RANK, TARGET_TOKENS, DELTA_LOSS, LOSS_FINAL,
                                    LOSS_INIT and WALL_S from the final result; a failure drops the
                                    trial and leaves its point free for one retry
    save(path) / restore(path)   JSON (adaptive.AdaptiveState plus a fingerprint of the candidates):
                                    Tune calls them through save_to_dir/restore_from_dir, so the
                                    searcher's state survives Tuner.restore

The searcher fits the law itself (orchestrator.law.uncertainty.fit_law, in the rank, covariance intervals) on
the results Tune hands it. The results actor fits the same records (the same final metrics of the
same finished trials: the callback forwards exactly what Tune gives the searcher, and both drop
failures and saturated runs), so the actor's live α, β and their intervals are the ones this
searcher stops on. With capacity_variable trainable_params the actor's C differs by the constant
parameters-per-rank factor, while α, β and their intervals are the same.

Cost: the design scores information per second of a cost model (orchestrator/law/trial_cost.py).
flop_prior builds its prior from the base model's config (FLOP counts at the trial's budget, no
weights read); the trials' measured wall_s correct it as they land, so a sweep's own step times
replace the derived ones. search.cost_budget_hours stops the sweep on that spend.

Concurrency: Tune wraps every searcher in a ConcurrencyLimiter when max_concurrent_trials is set;
set_max_concurrency tells it this searcher limits itself (it answers None while max_concurrent
proposals are running). metric and mode are not needed (it optimises no metric).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from ray.tune.search import Searcher

from orchestrator.law import adaptive_design as adaptive
from orchestrator.law import design_points, trial_cost

log = logging.getLogger(__name__)
STATE_VERSION = 1
#: The final-result keys on_trial_complete reads.
RESULT_KEYS = adaptive.OBSERVATION_KEYS


class AdaptiveLawSearcher(Searcher):
    """Proposes rank × length points of a grid where the law's exponents are least certain."""

    def __init__(self, candidates: design_points.Candidates, settings: adaptive.Settings | None = None,
                 max_concurrent: int = 1, cost: trial_cost.CostModel | None = None):
        super().__init__(metric=None, mode=None)
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.design = adaptive.AdaptiveDesign(candidates, settings, cost)
        self.state = adaptive.AdaptiveState()
        self.max_concurrent = max_concurrent

    @classmethod
    def from_grid(cls, grid: Any, settings: adaptive.Settings | None = None, max_concurrent: int = 1,
                  cost: trial_cost.CostModel | None = None) -> AdaptiveLawSearcher:
        """From a GridSpace with `adapter.rank` and `data.target_tokens` axes (others single-valued)."""
        return cls(design_points.candidates_from_grid(grid), settings, max_concurrent, cost)

    # -- Tune's protocol -----------------------------------------------------------------------------
    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True  # handled here: the ConcurrencyLimiter passes every call through

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        decision = self.design.next(self.state, max_pending=self.max_concurrent)
        if decision.action == "finish":
            if self.state.finished is None:
                self.state.finished = decision.reason
                log.info("adaptive sweep finished (%s): %s", decision.reason, self.status())
            return Searcher.FINISHED
        if decision.action == "wait":
            return None
        self.state.propose(trial_id, decision.point)
        return self.design.candidates.config(decision.point)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.state.complete(trial_id, result, error)

    # -- reporting -----------------------------------------------------------------------------------
    def fit(self):
        """The current law.LawFit from the results received so far."""
        return self.design.fit(self.state)

    def status(self) -> dict[str, Any]:
        """adaptive.AdaptiveDesign.stopping_status for the current fit, with the proposal count and spend."""
        return self.design.stopping_status(self.fit(), self.state.n_proposed, cost_spent=self.design.spent(self.state))

    # -- persistence ---------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "candidates": [list(p) for p in self.design.candidates.points],
                "max_concurrent": self.max_concurrent, "state": self.state.to_dict()}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"adaptive searcher state version {state.get('version')!r}, expected {STATE_VERSION}")
        saved = [design_points.point_key(p) for p in state["candidates"]]
        ours = [design_points.point_key(p) for p in self.design.candidates.points]
        if saved != ours:
            raise ValueError("the saved adaptive searcher ran over other candidate points; Tuner.restore cannot "
                             "change a search space")
        self.max_concurrent = int(state["max_concurrent"])
        self.state = adaptive.AdaptiveState.from_dict(state["state"])

    def save(self, checkpoint_path: str) -> None:
        tmp = f"{checkpoint_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.get_state(), fh)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as fh:
            self.set_state(json.load(fh))


def flop_prior(trial: Any) -> trial_cost.FlopCost | None:
    """The cost prior of a sweep's trials (a trainables TrialConfig): FLOP counts from the base model's
    config at the trial's steps, certificate cadence, prompt and placement, priced on an H100
    (trial_cost's defaults; measured wall_s rescale it). None when the config cannot be read: the
    design then counts trials until the first trial measures its time."""
    try:
        from trainables.model import resolve_source, tiny_llama_config

        if trial.model.is_tiny:
            config = tiny_llama_config(trial.model)
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(resolve_source(trial.model), gguf_file=trial.model.gguf_file)
        config = (config.get_text_config() if hasattr(config, "get_text_config") else config).to_dict()
        paper = trial.adapter.placement == "paper"  # peft: adapters from layer 0 up, nothing to cache
        shape = trial_cost.ModelShape.from_hf_config(config, adapter_layer=trial.adapter.layer if paper else 0,
                                                     cached=paper and trial.prefix_cache, name=trial.model.name)
        return trial_cost.FlopCost(shape, steps=trial.budget.steps, eval_every=trial.eval.every,
                                   prompt_tokens=trial.data.prompt_tokens)
    except Exception as err:  # noqa: BLE001 - a prior, never a reason to refuse a sweep
        log.warning("adaptive sweep: no FLOP cost prior for %s (%s); trials count alike until they report wall_s",
                    getattr(trial.model, "name", "?"), err)
        return None
