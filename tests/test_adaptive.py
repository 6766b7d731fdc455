"""Tests for the law-guided adaptive sweep: orchestrator/law/adaptive_design.py (pure) and the Tune searcher in
orchestrator/tune/adaptive_search.py, driven directly with synthetic results (no Ray cluster)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.law import adaptive_design as ad  # noqa: E402
from orchestrator.law import design_points  # noqa: E402
from orchestrator.law import fit as law  # noqa: E402
from orchestrator.tune.adaptive_search import AdaptiveLawSearcher  # noqa: E402
from search_spaces.law_grid import GridSpace  # noqa: E402
from trainables import metric_names as mn  # noqa: E402

TRUE = dict(C=14.0, alpha=0.6, beta=0.4, b=0.0)
LOSS_INIT = 8.7
RANKS = (1, 2, 4, 8, 16)
LENGTHS = (64, 128, 256, 512, 1024, 2048)
NOISE = 0.02
FINISHED = AdaptiveLawSearcher.FINISHED


def true_delta(r: float, ell: float) -> float:
    return TRUE["C"] * r ** TRUE["alpha"] * ell ** -TRUE["beta"] + TRUE["b"]


def oracle(r: float, ell: float, seed: int = 0) -> dict:
    """A finished trial's result: the law with 2 % multiplicative noise (fixed per point and seed);
    a run that would overshoot L_init ends saturated at a final loss of 0.05."""
    rng = np.random.default_rng([int(r), int(ell), seed])
    delta = true_delta(r, ell) * math.exp(NOISE * rng.standard_normal())
    final = max(LOSS_INIT - delta, 0.05)
    return {mn.RANK: r, mn.TARGET_TOKENS: ell, mn.DELTA_LOSS: LOSS_INIT - final, mn.LOSS_FINAL: final,
            mn.LOSS_INIT: LOSS_INIT, "steps": 200}


def make_searcher(max_concurrent: int = 2, **settings) -> AdaptiveLawSearcher:
    return AdaptiveLawSearcher(design_points.candidates_from_values(RANKS, LENGTHS), ad.Settings(**settings), max_concurrent)


def point_of(config: dict) -> tuple:
    return config["adapter.rank"], config["data.target_tokens"]


class Driver:
    """Plays Tune: asks for trials until the searcher waits or finishes, then completes the oldest."""

    def __init__(self, searcher: AdaptiveLawSearcher, seed: int = 0, fail=lambda point: False):
        self.searcher, self.seed, self.fail = searcher, seed, fail
        self.running: list[tuple[str, tuple]] = []
        self.proposals: list[tuple] = []
        self.fits_before: list[law.LawFit] = []  # the fit each proposal was made with
        self.finished = False
        self.counter = 0

    def step(self) -> bool:
        """One suggest or one completion; False once finished with nothing running."""
        if not self.finished:
            trial_id = f"t{self.counter:04d}"
            fit = self.searcher.fit()
            config = self.searcher.suggest(trial_id)
            if config == FINISHED:
                self.finished = True
            elif config is not None:
                self.counter += 1
                self.running.append((trial_id, point_of(config)))
                self.proposals.append(point_of(config))
                self.fits_before.append(fit)
                return True
        if not self.running:
            return False
        trial_id, point = self.running.pop(0)
        if self.fail(point):
            self.searcher.on_trial_complete(trial_id, None, error=True)
        else:
            self.searcher.on_trial_complete(trial_id, oracle(*point, seed=self.seed))
        return True

    def run(self, max_steps: int = 500) -> Driver:
        for _ in range(max_steps):
            if not self.step():
                return self
        raise AssertionError("the searcher never finished")


# -- candidates and the initial design -------------------------------------------------------------


def test_candidates_from_grid_fixes_single_axes_and_names_the_varying_ones():
    grid = GridSpace({"adapter.rank": (1, 2, 4), "data.target_tokens": (64, 128, 256), "data.random_share": (0.5,)})
    cands = design_points.candidates_from_grid(grid)
    assert len(cands.points) == 9 and cands.points[0] == (1, 64) and cands.points[-1] == (4, 256)
    assert cands.config((2, 128)) == {"adapter.rank": 2, "data.target_tokens": 128, "data.random_share": 0.5}
    with pytest.raises(ValueError, match="data.random_share"):
        design_points.candidates_from_grid(grid.with_axes({"data.random_share": [0.0, 1.0]}))
    with pytest.raises(ValueError, match="data.target_tokens"):
        design_points.candidates_from_grid(GridSpace({"adapter.rank": (1, 2)}))
    with pytest.raises(ValueError, match="3 lengths"):
        design_points.candidates_from_values((1, 2), (64, 128))


@pytest.mark.parametrize("ranks,lengths,n0", [
    (RANKS, LENGTHS, 6), (RANKS, LENGTHS, 5), (RANKS, LENGTHS, 12), ((1, 2), (64, 128, 256), 5),
    ((1, 2, 4, 8, 16, 32, 64, 128), (50, 100), 6),  # too few lengths: refused below
    ((1, 2), tuple(2**k for k in range(6, 16)), 5),  # two ranks, many lengths: both ranks still needed
])
def test_initial_design_is_spread_identifiable_and_deterministic(ranks, lengths, n0):
    if len(lengths) < design_points.MIN_LENGTHS:
        with pytest.raises(ValueError):
            design_points.candidates_from_values(ranks, lengths)
        return
    cands = design_points.candidates_from_values(ranks, lengths)
    design = design_points.initial_design(cands, n0, seed=3)
    assert design == design_points.initial_design(cands, n0, seed=3)
    assert len(design) == len(set(design)) == min(n0, len(cands.points))
    assert len({p[0] for p in design}) >= 2 and len({p[1] for p in design}) >= 3
    # maximin: no random design of the same size spreads its points farther apart (in log r, log ℓ)
    coords = dict(zip(cands.points, cands.coords))

    def spread(points):
        xy = np.array([coords[p] for p in points])
        d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.diag(np.full(len(points), np.inf))
        return d.min()

    rng = np.random.default_rng(0)
    random_designs = [[cands.points[i] for i in rng.choice(len(cands.points), len(design), replace=False)]
                      for _ in range(300)]
    assert spread(design) >= max(spread(d) for d in random_designs) - 1e-12


# -- the acquisition against a brute-force recomputation -------------------------------------------


def _observations(points, seed=1):
    return [{"point": list(p), **oracle(*p, seed=seed)} for p in points]


def _law_jacobian(fit: law.LawFit, obs) -> np.ndarray:
    """J = ∂ρ/∂θ over the fitted records, ρ = (f − ΔL)/ΔL with the observed ΔL (as law.py has it)."""
    theta = ad.theta_of(fit)
    rows = []
    for o in obs:
        r, ell, y = o[mn.RANK], o[mn.TARGET_TOKENS], o[mn.DELTA_LOSS]
        power = math.exp(theta[0] + theta[1] * math.log(r) - theta[2] * math.log(ell))
        rows.append(np.array([power, power * math.log(r), -power * math.log(ell), 1.0]) / y)
    return np.array(rows)


def test_acquisition_score_matches_brute_force_covariance_with_the_point_added():
    cands = design_points.candidates_from_values((1, 2, 4, 8), (64, 128, 256, 512, 1024))
    tried = [(1, 64), (1, 1024), (2, 256), (4, 128), (8, 1024), (8, 256), (4, 512)]
    obs = _observations(tried)
    fit = ad.fit_observations(obs)
    assert fit.status == "ok" and fit.n_points == len(tried)
    s2 = ad.residual_variance(fit, obs)
    jac = _law_jacobian(fit, obs)
    gram = jac.T @ jac
    np.testing.assert_allclose(s2 * np.linalg.inv(gram), np.array(fit.covariance), rtol=1e-5, atol=1e-12)

    untried = np.array([p not in tried for p in cands.points])
    running = [(2, 1024)]
    scores = ad.score_candidates(fit, s2, cands, untried & np.array([p not in running for p in cands.points]),
                                 running, None, 0.02)
    theta = ad.theta_of(fit)
    j_run = ad.jacobian_rows(theta, np.array(running, dtype=float))[0]
    before = s2 * np.linalg.inv(gram + np.outer(j_run, j_run))
    checked = 0
    for i, p in enumerate(cands.points):
        if not np.isfinite(scores.score[i]):
            assert p in tried or p in running
            continue
        j = ad.jacobian_rows(theta, np.array([p], dtype=float))[0]
        after = s2 * np.linalg.inv(gram + np.outer(j_run, j_run) + np.outer(j, j))
        brute = (before[1, 1] - after[1, 1]) + (before[2, 2] - after[2, 2])
        assert scores.score[i] == pytest.approx(brute, rel=1e-6, abs=1e-15)
        # and the rank-one update itself
        np.testing.assert_allclose(ad.add_point(before, j, s2), after, rtol=1e-6, atol=1e-15)
        checked += 1
    assert checked == len(cands.points) - len(tried) - len(running)
    best = scores.best()
    assert scores.score[best] == np.nanmax(scores.score)


def test_candidates_predicted_saturated_or_hopeless_are_not_admissible():
    cands = design_points.candidates_from_values(RANKS, (16, 64, 256, 1024, 2048))
    tried = [(1, 64), (1, 2048), (4, 256), (2, 1024), (8, 2048), (16, 1024)]
    obs = _observations(tried)
    fit = ad.fit_observations(obs)
    untried = np.array([p not in tried for p in cands.points])
    share = 0.15  # hopeless: predicted ΔL below 1.3 nats
    scores = ad.score_candidates(fit, ad.residual_variance(fit, obs), cands, untried, [], LOSS_INIT, share)
    reason = dict(zip(cands.points, scores.reason))
    assert reason[(16, 16)] == "saturated" and reason[(1, 64)] == "tried"
    assert reason[(1, 1024)] == "hopeless" and reason[(2, 2048)] == "hopeless"  # true ΔL 0.88, 1.01
    for p, why in reason.items():
        predicted = fit.predict(*p)
        assert (why == "saturated") == (p not in tried and LOSS_INIT - predicted < law.LN2)
        assert (why == "hopeless") == (p not in tried and why != "saturated" and predicted < share * LOSS_INIT)
        assert np.isfinite(scores.score[cands.index(p)]) == (why == "ok")


def test_scores_per_second_are_the_gains_over_the_costs_and_uniform_costs_change_nothing():
    from orchestrator.law.trial_cost import UniformCost

    cands = design_points.candidates_from_values(RANKS, LENGTHS)
    tried = [(1, 64), (1, 2048), (4, 256), (2, 1024), (8, 2048), (16, 1024)]
    obs = _observations(tried)
    fit = ad.fit_observations(obs)
    s2 = ad.residual_variance(fit, obs)
    untried = np.array([p not in tried for p in cands.points])
    plain = ad.score_candidates(fit, s2, cands, untried, [], LOSS_INIT, 0.02)
    costs = np.array([float(ell) for _, ell in cands.points])  # seconds grow with ℓ
    priced = ad.score_candidates(fit, s2, cands, untried, [], LOSS_INIT, 0.02, costs)
    ok = np.isfinite(plain.score)
    np.testing.assert_allclose(priced.gain[ok], plain.score[ok])
    np.testing.assert_allclose(priced.score[ok], plain.score[ok] / costs[ok])
    assert priced.reason == plain.reason
    # a uniform cost model proposes exactly what the cost-blind design proposes
    uniform = Driver(AdaptiveLawSearcher(cands, ad.Settings(alpha_tol=0.06, beta_tol=0.06), 2,
                                         cost=UniformCost(5.0))).run()
    blind = Driver(make_searcher(max_concurrent=2, alpha_tol=0.06, beta_tol=0.06, cost_aware=False)).run()
    assert uniform.proposals == blind.proposals


def test_the_searcher_reads_wall_s_and_reports_its_spend():
    searcher = make_searcher(max_concurrent=1)
    config = searcher.suggest("a")
    searcher.on_trial_complete("a", {**oracle(*point_of(config)), mn.WALL_S: 42.0})
    assert searcher.state.observations["a"][mn.WALL_S] == 42.0
    searcher.suggest("b")  # running: priced at the measured 42 s (one length measured, uniform prior)
    status = searcher.status()
    assert status["cost_spent"] == pytest.approx(84.0) and status["cost_budget"] == 0.0


# -- the searcher over a whole run -----------------------------------------------------------------


def test_adaptive_run_spreads_first_avoids_saturation_stops_early_and_recovers_the_law():
    searcher = make_searcher(max_concurrent=2, alpha_tol=0.06, beta_tol=0.06)
    n0 = searcher.design.settings.initial_points
    driver = Driver(searcher).run()
    props = driver.proposals
    assert props[:n0] == searcher.design.initial  # the space-filling design comes first
    assert len(props) == len(set(props))  # never a point twice
    for point, fit in zip(props[n0:], driver.fits_before[n0:]):
        assert fit.status == "ok"  # adaptive proposals only once the initial design has results
        assert LOSS_INIT - fit.predict(*point) >= law.LN2, point  # never a predicted-saturated point
    assert (16, 64) not in props  # saturated (true ΔL 14 > L_init): the fit says so before it runs
    status = searcher.status()  # the final fit, every proposal's result in it
    assert searcher.state.finished == "tolerance" and status["fired"] and status["reason"] == "tolerance", status
    assert len(props) < len(RANKS) * len(LENGTHS) // 2  # well before the budget of 30
    assert status["alpha_width"] <= 0.06 and status["beta_width"] <= 0.06
    assert status["alpha_excess"] <= 0 and status["alpha_ratio"] <= 1 and status["dof"] >= status["min_dof"]
    fit = searcher.fit()
    assert fit.alpha_ci[0] <= TRUE["alpha"] <= fit.alpha_ci[1], fit
    assert fit.beta_ci[0] <= TRUE["beta"] <= fit.beta_ci[1], fit
    assert searcher.suggest("later") == FINISHED


def test_searcher_waits_for_the_initial_design_and_respects_max_concurrent():
    searcher = make_searcher(max_concurrent=4)
    got = [searcher.suggest(f"a{i}") for i in range(5)]
    assert all(isinstance(c, dict) for c in got[:4]) and got[4] is None  # four running: wait
    for i in range(4):
        searcher.on_trial_complete(f"a{i}", oracle(*point_of(got[i])))
    more = [searcher.suggest(f"b{i}") for i in range(3)]
    assert all(isinstance(c, dict) for c in more[:2]) and more[2] is None  # initial design out: wait for it
    searcher.on_trial_complete("b0", oracle(*point_of(more[0])))
    assert searcher.suggest("b2") is None  # one initial point still running
    searcher.on_trial_complete("b1", oracle(*point_of(more[1])))
    first_adaptive = [searcher.suggest(f"c{i}") for i in range(4)]
    points = [point_of(c) for c in first_adaptive if isinstance(c, dict)]
    assert len(points) == 4 and len(set(points)) == 4  # four at once, each scored with the others folded in


def test_save_restore_mid_run_continues_identically(tmp_path):
    a = make_searcher(max_concurrent=3, alpha_tol=0.04, beta_tol=0.04)
    driver_a = Driver(a)
    while len(driver_a.proposals) < 9:  # mid-run: past the initial design, trials still running
        driver_a.step()
    assert driver_a.running
    path = tmp_path / "searcher-state-x.pkl"
    a.save(str(path))
    state = json.loads(path.read_text())  # plain JSON
    assert ad.AdaptiveState.from_dict(json.loads(json.dumps(a.state.to_dict()))) == a.state

    b = make_searcher(max_concurrent=1, alpha_tol=0.04, beta_tol=0.04)  # settings come from the sweep file
    b.restore(str(path))
    assert b.max_concurrent == 3 and b.get_state() == state
    driver_b = Driver(b)
    driver_b.running, driver_b.counter = list(driver_a.running), driver_a.counter
    driver_a.run()
    driver_b.run()
    assert driver_b.proposals == driver_a.proposals[9:]
    assert b.status() == a.status()

    other = AdaptiveLawSearcher(design_points.candidates_from_values((1, 2, 4), LENGTHS), ad.Settings())
    with pytest.raises(ValueError, match="other candidate points"):
        other.restore(str(path))


def test_save_to_dir_and_concurrency_limiter_as_tune_uses_them(tmp_path):
    from ray.tune.search import ConcurrencyLimiter

    searcher = make_searcher(max_concurrent=1)
    limited = ConcurrencyLimiter(searcher, max_concurrent=2)  # what TuneConfig(max_concurrent_trials=2) does
    assert searcher.max_concurrent == 2
    first = [limited.suggest(f"t{i}") for i in range(3)]
    assert isinstance(first[0], dict) and isinstance(first[1], dict) and first[2] is None
    limited.on_trial_complete("t0", oracle(*point_of(first[0])))
    searcher.save_to_dir(str(tmp_path), "session")
    restored = make_searcher()
    restored.restore_from_dir(str(tmp_path))
    assert restored.state == searcher.state and list(restored.state.pending) == ["t1"]


def test_failed_point_is_retried_once_then_left_out():
    searcher = make_searcher(max_concurrent=1, initial_points=6, alpha_tol=0.01, beta_tol=0.01)
    bad = searcher.design.initial[1]

    def fails(point):
        return point == bad

    driver = Driver(searcher, fail=fails).run()
    assert driver.proposals.count(bad) == 2
    others = [p for p in driver.proposals if p != bad]
    assert len(others) == len(set(others))
    assert searcher.state.failures == [bad, bad] and len(searcher.state.observations) == len(others)
    assert searcher.state.finished in ("budget", "no_candidates")  # tolerances too tight to meet
    assert driver.proposals.index(bad) == 1 and driver.proposals[2] == bad  # retried at once: still initial


def test_stopping_status_budget_dof_and_bounds():
    design = ad.AdaptiveDesign(design_points.candidates_from_values(RANKS, LENGTHS), ad.Settings(alpha_tol=1.0, beta_tol=1.0,
                                                                                       max_trials=9))
    obs = _observations([(1, 64), (1, 2048), (16, 2048), (4, 512), (2, 128)])  # 5 records: dof 1
    fit = ad.fit_observations(obs)
    status = design.stopping_status(fit, 5)
    assert fit.status == "ok" and fit.dof == 1 and not status["fired"]  # wide tolerance, but dof < min_dof
    assert design.stopping_status(fit, 9)["reason"] == "budget"
    assert design.stopping_status(fit, 5, admissible=0)["reason"] == "no_candidates"
    obs += _observations([(8, 1024), (2, 2048), (4, 128), (16, 1024)])
    fit = ad.fit_observations(obs)
    status = design.stopping_status(fit, 9)
    assert status["reason"] == "tolerance" and status["alpha_excess"] < 0 and status["beta_ratio"] < 1
    bounded = law.LawFit.from_dict({**fit.to_dict(), "at_bound": ["alpha"]})
    assert design.stopping_status(bounded, 5)["reason"] is None  # an exponent on a bound never stops it
    none = ad.fit_observations(obs[:3])
    status = design.stopping_status(none, 3)
    assert status["fit_status"] == "too_few_points" and status["alpha_width"] is None and not status["fired"]
    assert json.loads(json.dumps(status)) == status


def test_budget_stops_the_searcher():
    searcher = make_searcher(max_concurrent=2, max_trials=7, alpha_tol=0.001, beta_tol=0.001)
    driver = Driver(searcher).run()
    assert len(driver.proposals) == 7 and searcher.state.finished == "budget"


# -- wiring ------------------------------------------------------------------------------------------


ADAPTIVE_SWEEP = {"name": "ad", "trial": {"model": {"name": "tiny-s"}, "data": {"kind": "random"}},
                  "space": "law_grid_cpu", "storage_path": "/tmp/memlaw-test-unused",
                  "search": {"kind": "adaptive", "alpha_tol": 0.1, "initial_points": 5}}


def test_tuner_builds_the_adaptive_searcher():
    from orchestrator.config import sweep as config
    from orchestrator.search.kinds import search_of

    sweep = config.SweepConfig.from_dict(ADAPTIVE_SWEEP)
    from orchestrator.tune.searchers import tune_side

    kind, side = search_of(sweep), tune_side(sweep)
    searcher = side.search_alg(sweep, sweep.experiment_uri)
    assert isinstance(searcher, AdaptiveLawSearcher) and side.param_space(sweep) == {}
    assert searcher.design.settings.alpha_tol == 0.1 and searcher.design.budget == 16
    assert searcher.max_concurrent == sweep.max_concurrency and len(searcher.design.initial) == 5
    assert kind.trial_count(sweep) == kind.tune_samples(sweep) == 16


def test_the_flop_prior_prices_the_sweeps_own_trials():
    from orchestrator.law import trial_cost
    from orchestrator.tune.adaptive_search import flop_prior
    from trainables.config import TrialConfig

    trial = TrialConfig.from_dict({"model": {"name": "tiny-s"}, "budget": {"preset": "cpu", "steps": 300},
                                   "eval": {"every": 50}})
    prior = flop_prior(trial)
    assert isinstance(prior, trial_cost.FlopCost) and (prior.steps, prior.eval_every) == (300, 50)
    assert prior.shape.cached and prior.shape.adapter_layer == (2 * prior.shape.layers) // 3
    short, long_ = prior.seconds([(1, 128), (1, 4096)])
    assert long_ > short
    peft = flop_prior(TrialConfig.from_dict({"model": {"name": "tiny-s"}, "adapter": {"placement": "peft"}}))
    assert peft.shape.adapter_layer == 0 and not peft.shape.cached  # LoRA from layer 0 up: nothing to cache
    unreadable = TrialConfig.from_dict({"model": {"name": "/no/such/model/folder"}})
    assert flop_prior(unreadable) is None  # no prior: the design counts trials until they report wall_s


def test_sweep_config_validates_adaptive_searches():
    from orchestrator.config import sweep as config

    base = ADAPTIVE_SWEEP
    sweep = config.SweepConfig.from_dict(base)
    assert sweep.search.max_trials == 0 and sweep.search.beta_tol == 0.05
    with pytest.raises(config.ConfigError, match="data.random_share") as err:
        config.SweepConfig.from_dict({**base, "space": "density_grid_cpu"})
    assert len(err.value.problems) == 1
    with pytest.raises(config.ConfigError) as err:
        config.SweepConfig.from_dict({**base, "search": {"kind": "adaptive", "initial_points": 17}})
    assert [p.field for p in err.value.problems] == ["search.initial_points"]
    with pytest.raises(config.ConfigError, match="max_trials"):
        config.SweepConfig.from_dict({**base, "search": {"kind": "adaptive", "max_trials": 3}})
    with pytest.raises(config.ConfigError, match="alpha_tol"):
        config.SweepConfig.from_dict({**base, "search": {"kind": "adaptive", "alpha_tol": 0}})


def test_adaptive_module_is_pure():
    code = (
        "import sys\n"
        "for name in ('ray', 'torch', 'deepspeed', 'pandas'):\n"
        "    sys.modules[name] = None\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import orchestrator.law.adaptive_design as ad\n"
        "import orchestrator.law.design_points as design_points\n"
        "design = ad.AdaptiveDesign(design_points.candidates_from_values((1, 2, 4), (64, 128, 256)))\n"
        "assert design.next(ad.AdaptiveState()).action == 'propose'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
