"""The Ray glue: everything in memlaw that imports Ray (Ray Tune, Ray Train, actors, Jobs).

    tuner             builds and runs the Tuner of an experiment (the one place that knows Tune's API)
    trainable         the Tune trial functions: one process (memorize) or DeepSpeed ranks (memorize_zero)
    callbacks         forwards each finished trial's record to the results actor
    results_actor     the detached actor that journals records and refits the law as they land
    searchers         each search kind's Tune side (param space, search algorithm, end of sweep)
    adaptive_search   the law-guided design as a Tune Searcher; optuna_study: Optuna's searcher
    validation_phase  the held-out validation of a MemFT search, a second Tune phase
    ray_session       starting or joining Ray, token authentication; live_query: asking a running sweep
    moved_experiment  a moved or copied experiment resumed: the searcher's future trials repointed to it
    run_provenance    each run's entry in provenance.json, with this driver's GPUs and the Ray cluster
    jobs              the Ray Jobs API (`memlaw submit`, `memlaw law --dashboard`)
    sweep_output      the lines a sweep prints as trials land; running_line: the line while they train
    library_log       Ray's, Tune's and Optuna's own log lines, routed to the experiment's library.log

May import report, experiment, config, search, law, records, trainables and search_spaces; nothing
below it imports Ray (import-linter contract "ray-free").
"""
