"""The Ray token stays home (issue 24, item 2): `memlaw law --experiment DIR --live` connects only
to a loopback socket of this machine that belongs to this user, whatever `memlaw_live.json` says,
and a damaged live file is one line, exit 2.

Real listeners, no mocks: a plain TCP listener that counts the connections it accepts stands where
a gRPC server would (Ray's first act on connecting is to open one). One runs as another user (uid
65534, `nobody`) on 127.0.0.2; one runs as us on this machine's non-loopback address. After each
query the listener says how many connections it saw: zero, or the token could have left.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import require_root
from orchestrator.cli import main as cli
from orchestrator.cli.output import EXIT_BAD_INPUT
from orchestrator.experiment.live_file import LIVE_FILE, LiveRefused, NotLive
from orchestrator.experiment.live_trust import listener_owner, trusted_address

NOBODY = 65534
#: A listener: bind, print the port, then count accepted connections until stdin closes.
LISTENER = """
import os, select, socket, sys
if sys.argv[2] != "-":  # become the other user after the imports (this python may be under /root)
    os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[2]))
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
n = 0
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if s in ready:
        conn, _ = s.accept(); n += 1; conn.close()
    if sys.stdin in ready:
        break
print(n, flush=True)
"""


class Listener:
    """A counting TCP listener in its own process, optionally as another user (the socket's owner in
    /proc/net/tcp is the uid that created it)."""

    def __init__(self, host: str, uid: int | None = None):
        self.proc = subprocess.Popen([sys.executable, "-I", "-c", LISTENER, host, "-" if uid is None else str(uid)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.host, self.port = host, int(self.proc.stdout.readline())

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connections(self) -> int:
        """Stop it, and how many connections it accepted."""
        self.proc.stdin.close()
        count = int(self.proc.stdout.readline())
        self.proc.wait(timeout=10)
        return count


def live_experiment(tmp_path: Path, address: str, host: str | None = None) -> str:
    """A finished experiment whose live file names `address`, written by a running driver (this pid)."""
    from test_structure import finished_experiment

    uri = finished_experiment(tmp_path)
    info = {"address": address, "namespace": "memlaw", "sweep": "law", "host": host or socket.gethostname(),
            "pid": os.getpid(), "started_at": time.time()}
    Path(uri, LIVE_FILE).write_text(json.dumps(info))
    return uri


def query(uri: str, capsys) -> tuple[int, str]:
    code = cli.main(["law", "--experiment", uri, "--live", "--json"])
    return code, capsys.readouterr().err


def non_loopback_ip() -> str:
    """This machine's address on its default route (a UDP connect sends nothing), else any
    non-loopback address of its name."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.1", 9))
            if not s.getsockname()[0].startswith("127."):
                return s.getsockname()[0]
        except OSError:
            pass
    for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
        if not sockaddr[0].startswith("127."):
            return sockaddr[0]
    raise AssertionError("this machine has no non-loopback IPv4 address to listen on")


@pytest.fixture
def as_root():
    require_root("a listener owned by another user")


def test_no_token_reaches_a_loopback_listener_of_another_user(tmp_path, capsys, as_root):
    foreign = Listener("127.0.0.2", uid=NOBODY)
    try:
        assert listener_owner(ipaddress.ip_address("127.0.0.2"), foreign.port) == NOBODY
        code, err = query(live_experiment(tmp_path, foreign.address), capsys)
    finally:
        seen = foreign.connections()
    assert seen == 0, f"memlaw connected {seen} times to another user's socket"
    assert code == EXIT_BAD_INPUT
    assert f"the socket at {foreign.address}" in err and f"belongs to uid {NOBODY} (nobody)" in err
    assert "does not send your Ray token there" in err and len(err.strip().splitlines()) == 1


def test_a_non_loopback_address_is_never_contacted(tmp_path, capsys):
    ours = Listener(non_loopback_ip())
    try:
        code, err = query(live_experiment(tmp_path, ours.address), capsys)
    finally:
        seen = ours.connections()
    assert seen == 0 and code == EXIT_BAD_INPUT
    assert f"address {ours.address} is not on loopback" in err and f"pass --address {ours.address}" in err


@pytest.mark.parametrize("address", ["example.org:6379", "localhost.evil.example:6379", "127.0.0.1:0",
                                     "127.0.0.1:99999", "127.0.0.1", "[::ffff:192.0.2.2]:6379"])
def test_names_and_odd_addresses_are_refused_unresolved(tmp_path, capsys, address):
    code, err = query(live_experiment(tmp_path, address), capsys)
    assert code == EXIT_BAD_INPUT and LIVE_FILE in err and len(err.strip().splitlines()) == 1


def test_another_host_needs_an_explicit_address(tmp_path, capsys):
    ours = Listener("127.0.0.1")
    try:
        code, err = query(live_experiment(tmp_path, ours.address, host="elsewhere.example"), capsys)
    finally:
        seen = ours.connections()
    assert seen == 0 and code == EXIT_BAD_INPUT
    assert "names host 'elsewhere.example', not this machine" in err and "pass --address" in err


def test_our_own_loopback_listener_is_trusted_and_a_free_port_is_not_live():
    ours = Listener("127.0.0.2")
    try:
        info = {"address": ours.address, "host": socket.gethostname()}
        assert trusted_address(info, LIVE_FILE) == ours.address
    finally:
        assert ours.connections() == 0  # the check reads /proc/net/tcp; it never connects
    with pytest.raises(NotLive, match=f"nothing listens at {ours.address}"):
        trusted_address(info, LIVE_FILE)  # the listener has ended: the sweep is not running


@pytest.mark.parametrize("content", [b"[]", b"{}", b"\x00\xff\xfe binary", b'{"address": "127.0.0.1:1", "pid"',
                                     b'{"address": 5, "namespace": "m", "sweep": "s", "host": "h", "pid": 1}',
                                     b'{"address": "a:1", "namespace": "m", "sweep": "s", "host": "h", "pid": true}',
                                     None])
def test_a_damaged_live_file_is_one_line_exit_2(tmp_path, capsys, content):
    uri = live_experiment(tmp_path, "127.0.0.1:1")
    path = Path(uri, LIVE_FILE)
    path.unlink()
    if content is None:
        path.mkdir()  # a folder in its place
    else:
        path.write_bytes(content)
    code, err = query(uri, capsys)
    assert code == EXIT_BAD_INPUT, err
    assert f"{path} is damaged" in err and "delete it if no sweep runs there" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(LiveRefused):
        from orchestrator.experiment.live_file import read_live

        read_live(uri)


def test_a_stale_live_file_of_an_ended_driver_gives_the_stored_fit(tmp_path, capsys):
    """README: a live file whose driver is gone (a killed run leaves it) means 'not running'."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    uri = live_experiment(tmp_path, "127.0.0.1:1")
    info = json.loads(Path(uri, LIVE_FILE).read_text())
    Path(uri, LIVE_FILE).write_text(json.dumps({**info, "pid": ended.pid}))
    code, err = query(uri, capsys)
    assert code == 0 and f"the sweep is not running (its driver, pid {ended.pid}, has ended)" in err
