"""The Parametric Memory Law as pure math: ΔL = C·r^α·ℓ^(−β) + b, fitted, judged and used.

    fit              the model, the records and cells a fit uses, the solver, LawFit
    uncertainty      fit_law (the entry point): intervals, covariance, bootstrap, R², MAPE,
                     leave-one-length-out
    grouping         fit_groups: one fit per group of comparable records (GroupFit), and the cells
                     each fit left out
    identifiability  profile intervals, the exponents over b's interval, the lack-of-fit test
    robust_fit       Besiroglu et al.'s robust recipe, a second estimator for `memlaw law --robust`
    capacity         required_capacity: the rank (or parameters) a target ΔL needs
    design_points    the candidate (r, ℓ) points of an adaptive sweep and its space-filling start
    adaptive_design  the law-guided proposals and the stopping rule (Sherman–Morrison scores, per
                     second of trial cost)
    trial_cost       what a trial costs at (r, ℓ): FLOP counts of a model's shape, measured wall times
    paper_oracle     a simulated paper-size sweep (known law, noise, saturation, cost) and drivers that
                     run the adaptive design or a fixed order against it, for tests and benchmarks

Arrows one way: fit <- identifiability <- uncertainty <- grouping; fit <- robust_fit <- grouping;
fit <- capacity; design_points, fit, uncertainty, trial_cost <- adaptive_design <- paper_oracle
(which also reads the paper's grid from search_spaces.law_grid). Imports numpy, scipy,
search_spaces' grids and trainables' pure modules only: no Ray, no torch, no
records (callers hand it rows), so it is tested in milliseconds. Each module's docstring carries
the notation of the math it holds.
"""
