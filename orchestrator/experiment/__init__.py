"""An experiment's folder: the sweep saved in it, one run at a time, its exports, its live file.

    folder      the folder's names, Experiment(uri, sweep), open_experiment, the run lock or lease,
                explicit reuse (--resume / --new), the validation phase's and Optuna's files
    export      records to Parquet or CSV with their damage report, and back
    provenance  what each run ran on (versions, commit, machine, command line): provenance.json
    live_file   where a running sweep's Ray is (memlaw_live.json), for the live query
    tune_state  whether Tune can restore the experiment (its newest state file there and whole)
    live_trust  whether that address may receive the Ray token (this host, loopback, this user's socket)

May import config, search, law and records; never Ray or torch: the commands that only read an
experiment (law, export, plot, best) run with Ray not installed.
"""
