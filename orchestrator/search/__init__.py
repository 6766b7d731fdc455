"""How a sweep chooses its trials, with no Ray: the search kinds and what judges their results.

    kinds              Grid, Optuna, Adaptive behind one SearchKind protocol and one registry
                       (their Tune side: orchestrator/tune/searchers.py)
    best_trials        ranking and the Pareto front of a search's records
    validation_plan    the held-out validation's arms, seeds and summary
    validation_stats   paired differences, intervals and the winner rule

May import law and records (and trainables, search_spaces); never config (kinds read a sweep
through the small SweepView protocol), Ray or torch.
"""
