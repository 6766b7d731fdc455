"""memlaw's orchestration: sweeps on Ray Tune, the live law fit, the results actor, the CLI.

Ray reads RAY_AUTH_MODE when it is imported, and every driver and node of a cluster must agree on
it (Ray 2.60 turns token authentication on for local clusters by default). We default to token
authentication before anything here can import Ray; a user's explicit setting wins.
"""

import os

os.environ.setdefault("RAY_AUTH_MODE", "token")
