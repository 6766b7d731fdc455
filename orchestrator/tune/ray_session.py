"""Starting or joining Ray for a memlaw driver: token authentication, and the embedded local Ray.

Ray reads RAY_AUTH_MODE when it starts a cluster or connects, and every driver and node of a
cluster must agree on it (Ray 2.60 turns token authentication on for new local clusters by
default). memlaw asks for token authentication explicitly, before Ray is first used: `memlaw`'s
entry point and `start_ray` call `default_token_auth()`; a user's own setting wins. Nothing here
changes the environment at import.

The embedded default is a new local Ray started in-process: every process bound to 127.0.0.1,
token authentication on, a capped object store, and no dashboard web server unless asked for
(`memlaw sweep --dashboard`: on 127.0.0.1, Ray's port 8265 or the next free one, behind the same
token). `--address` joins an existing cluster instead.
"""

from __future__ import annotations

import contextlib
import os
import sys

OBJECT_STORE_BYTES = 128 * 1024 * 1024
NAMESPACE = "memlaw"
AUTH_MODE_ENV = "RAY_AUTH_MODE"


def default_token_auth() -> None:
    """Token authentication unless the user chose otherwise (inherited by every Ray process we start).

    Only before Ray is imported: Ray caches its config at import, and a mode set after that reaches
    the processes ray.init starts but not the driver, which then never creates the token they need
    (gcs_server dies: "Token authentication is enabled but Ray couldn't find an authentication
    token"). When Ray came first, ray.init's own default applies: token authentication for a new
    local cluster (Ray >= 2.60), the cluster's token when joining one."""
    if "ray" not in sys.modules:
        os.environ.setdefault(AUTH_MODE_ENV, "token")


TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"


def token_file() -> str | None:
    """The token file Ray reads, in Ray's own order: none when RAY_AUTH_TOKEN holds the token, else
    RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    if os.environ.get(TOKEN_ENV):
        return None
    return os.environ.get(TOKEN_PATH_ENV) or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")


def tighten_token_file() -> str | None:
    """Make Ray's token file readable by its owner only (0600) when it is wider; the path it
    tightened, else None. Ray writes the file with the process's umask (0644 by default), and
    whoever reads it can run code on the cluster. Call it after Ray created the token."""
    import stat

    path = token_file()
    try:
        mode = os.stat(path).st_mode if path else None
    except OSError:  # no token file (yet): nothing to tighten
        return None
    if mode is None or not stat.S_ISREG(mode) or not mode & 0o077:
        return None
    os.chmod(path, 0o600)
    return path


def start_ray(address: str | None, num_cpus: int | None = None, dashboard: bool = False) -> str | None:
    """Join `address`, or start the embedded local Ray (small object store; with `dashboard`, its
    dashboard on 127.0.0.1). The dashboard's URL when this process started one, else None."""
    default_token_auth()
    import ray

    if ray.is_initialized():
        return None
    url = None
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    else:  # address="local": always a new in-process cluster, never one that `ray start` left running.
        with loopback_node_ip(), free_agent_port():
            context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                               dashboard_host="127.0.0.1", object_store_memory=OBJECT_STORE_BYTES,
                               namespace=NAMESPACE, log_to_driver=False, _node_ip_address="127.0.0.1")
        if dashboard and context.dashboard_url:
            url = f"http://{context.dashboard_url}"
    tighten_token_file()  # ray.init may just have written it, world-readable
    return url


def token_hint() -> str:
    """How a person passes this Ray's token to its dashboard (never the token itself)."""
    where = token_file()
    source = f"$(cat {where})" if where else f"${TOKEN_ENV}"
    return (f"the page asks once for the Ray token: paste the output of `cat {where}`" if where else
            f"the page asks once for the Ray token: paste ${TOKEN_ENV}") + \
        f"; from a script: curl -H \"Authorization: Bearer {source}\" URL/api/version"


@contextlib.contextmanager
def loopback_node_ip():
    """Keep the embedded node's address 127.0.0.1, so that every process it starts listens on loopback only.

    ray.init turns a loopback `_node_ip_address` into the machine's address (so that other machines
    could join) unless Ray clusters are off: `ray_constants.ENABLE_RAY_CLUSTER`, read once from
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import and consulted only by `services.get_node_ip_address`.
    With it off during ray.init, GCS, raylet, agents and workers get --node-ip-address=127.0.0.1 and
    bind there (tests/test_security.py lists every socket; tests/test_private_apis.py fails loudly
    if the constant goes away). Restored at once: joining a cluster with `--address` must still see
    the machine's address.

    The same switch as an environment variable (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) for the
    processes ray.init starts, which inherit it: every Ray process of this node (raylet, workers,
    the dashboard agent, the drivers of Ray Jobs) then connects to 127.0.0.1 as given. Without it
    the dashboard agent's own connection, made for the first Ray Job, is rewritten to the
    machine's address, where this GCS does not listen, and the job submission hangs. The driver's
    environment is restored too, so later subprocesses of this process are unaffected."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    saved_env = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved_env


@contextlib.contextmanager
def free_agent_port():
    """Let the embedded node's dashboard agent listen on a free port instead of Ray's fixed 52365.

    ray.init offers no argument for it, and RayParams defaults it to 52365, where any other Ray on
    the machine (another user's, a `ray start --head`) already listens: our agent then runs without
    its HTTP server, and the Jobs API answers "No available agent to submit job" and the dashboard
    "Agent for node id ... doesn't exist" for the actor logs. With 0, Node picks a free port, as it
    does for the other agent ports (node.py: `update_if_absent(... or 0)`); the dashboard learns it
    from the GCS. Only during ray.init (tests/test_private_apis.py checks the default's place)."""
    from ray._private import parameter

    original = parameter.RayParams.__init__

    def init(self, *args, **kwargs):
        kwargs.setdefault("dashboard_agent_listen_port", 0)
        original(self, *args, **kwargs)

    parameter.RayParams.__init__ = init
    try:
        yield
    finally:
        parameter.RayParams.__init__ = original


def stop_ray() -> None:
    """Shut down this process's Ray, if it started or joined one."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
