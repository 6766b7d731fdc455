"""What a reader sees of an experiment, from its records: the law report, findings, plots.

law_report builds and formats the fit of a sweep's records (and a search's best trials and
validation); findings states in one sentence what a law grid found; plot draws the law and the
recall grid. Reads storage only: imports experiment, config, search, law and records, never Ray or
torch (import-linter contracts in pyproject.toml).
"""
