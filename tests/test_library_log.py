"""A sweep's terminal carries memlaw's lines only (issue 25 item 10): Ray's, Tune's and Optuna's own
log lines go to the experiment's library.log, counted, and the loggers are put back afterwards.
No Ray is started: the loggers are Python's, written to as the libraries write to them."""

from __future__ import annotations

import logging

from orchestrator.tune.library_log import closing_line, log_path, routed


def test_library_lines_go_to_the_experiments_log_and_the_loggers_are_restored(tmp_path, capfd):
    import optuna
    import ray  # noqa: F401  (as in a sweep: the libraries' own handlers are installed first)

    optuna.logging.get_logger("optuna")
    uri = str(tmp_path / "exp")
    before = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
              for name in ("ray", "optuna")}
    with routed(uri, "exp", verbose=False) as handler:
        logging.getLogger("ray.tune.tune").info("Total run time: 13.89 seconds")
        logging.getLogger("ray.tune.search").warning("ConcurrencyLimiter: batch mode")
        logging.getLogger("optuna.storages").info("A new study created in Journal with name: exp")
        line = closing_line(handler)
    out, err = capfd.readouterr()
    assert "Total run time" not in out + err and "ConcurrencyLimiter" not in out + err and "new study" not in err
    text = open(log_path(uri, "exp")).read()
    assert "Total run time" in text and "ConcurrencyLimiter" in text and "new study created" in text
    assert line == f"  Ray/Tune/Optuna log: {log_path(uri, 'exp')} (1 warning; --verbose shows them here)"
    after = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
             for name in ("ray", "optuna")}
    assert after == before


def test_verbose_leaves_the_libraries_as_they_are(tmp_path):
    with routed(str(tmp_path / "exp"), "exp", verbose=True) as handler:
        assert handler is None and closing_line(handler) is None
    assert not (tmp_path / "exp").exists()


def test_an_object_store_experiment_logs_under_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert log_path("s3://bucket/runs/exp", "exp") == str(tmp_path / ".cache" / "memlaw" / "logs" / "exp.log")


def test_an_unwritable_log_leaves_the_lines_in_the_terminal_and_says_why(tmp_path, capsys):
    """A disk that cannot take the log file (here: a file where its folder must go) never stops the sweep."""
    uri = tmp_path / "exp"
    uri.mkdir()
    (uri / "memlaw").write_text("a file, not a folder")
    with routed(str(uri), "exp", verbose=False) as handler:
        assert handler is None and closing_line(handler) is None
    err = capsys.readouterr().err
    assert f"cannot write {uri / 'memlaw' / 'library.log'}" in err and "log lines stay here" in err, err
