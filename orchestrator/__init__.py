"""The sweep driver: configs, the live law fit, the results actor, Tune wiring and the CLI."""
