"""How a sweep chooses its trials, with no Ray: the search kinds and what judges their results.

    kinds              Grid, Optuna, Adaptive behind one SearchKind protocol and one registry
                       (their Tune side: orchestrator/tune/searchers.py)
    best_trials        ranking and the Pareto front of a search's records
    validation_plan    the held-out validation's arms, seeds and summary
    validation_stats   means (shares inside [0, 1]), paired differences, Holm and the winner rule
    validation_censored  steps to stable certification as right-censored data: orderings, KM, bounds
    validation_text    the validation's summary as text (`memlaw best`, a search's end report)

May import law and records (and trainables, search_spaces); never config (kinds read a sweep
through the small SweepView protocol), Ray or torch.
"""
