"""memlaw's orchestration: sweeps on Ray Tune, the live law fit, the results actor, the CLI.

One package per concern, each importing only those below it (pyproject.toml's import-linter
contracts, run by tests/test_structure.py):

    cli            the `memlaw` command line, commands grouped by what they do
    reproduction   `memlaw reproduce`: the paper's figures regenerated into docs/reproduction.md
    tune           the Ray glue, the only package that imports Ray: Tuner, trainable, callbacks,
                   results actor, Ray's start and token, Jobs, Tune searchers, validation phase
    report         what a reader sees of an experiment: the law report, findings, plots
    experiment     an experiment's folder: the saved sweep, its lock, export, the live file
    config         the sweep file (SweepConfig), preflight against this machine, the cluster file
    search         how a sweep chooses trials, Ray-free: the search kinds, best trials, the
                   validation's plan and statistics
    law | records  pure math of the law (fit, uncertainty, capacity, the adaptive design), and
                   the trial records with their journal and storage (independent of each other)

Below all of them: trainables (one trial) and search_spaces (the spaces a sweep draws from), which
never import orchestrator. Importing this package changes nothing: Ray's token authentication is
chosen by orchestrator/tune/ray_session.py when a memlaw driver starts or joins Ray.
"""
