"""memlaw's orchestration: sweeps on Ray Tune, the live law fit, the results actor, the CLI.

Importing this package changes nothing: Ray's token authentication is chosen by
orchestrator/tune/ray_session.py when a memlaw driver starts or joins Ray.
"""
