"""Whether a live file's address may receive this machine's Ray token. Pure Python, no Ray.

`memlaw law --experiment DIR --live` joins the Ray that `DIR/memlaw_live.json` names, and Ray sends
the bearer token (~/.ray/auth_token) with every call. The live file lives in the experiment folder,
which others may write (a shared disk, a folder someone handed you), so its address is not trusted
for what it says. memlaw connects only when all of these hold:

    host      the file's `host` is this machine (socket.gethostname())
    address   an IP literal on loopback (127.0.0.0/8, ::1) or `localhost`, with a port in 1-65535;
              never a name to resolve, never another interface
    owner     a socket listening there belongs to this user: on Linux the uid column of
              /proc/net/tcp and /proc/net/tcp6 (a wildcard listener 0.0.0.0 or :: on the port counts)

Nothing listening there: the sweep is not running (NotLive, the caller falls back to storage and no
connection is attempted). Any other failure: LiveRefused, one line, exit 2, naming what failed and
that `--address ADDR` connects to a Ray the user chooses to trust. Where /proc/net is missing
(macOS, Windows) the owner cannot be checked: refused the same way, saying so.

The check and the connection are two steps: a socket freed between them could be taken by another
local user in that window (milliseconds); the embedded Ray's port stays bound while its sweep runs.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Any

from orchestrator.experiment.live_file import LiveRefused, NotLive

#: /proc/net/tcp's state column for a listening socket.
TCP_LISTEN = "0A"
PROC_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def trusted_address(info: dict[str, Any], live_path: str) -> str:
    """`info`'s address, once it is this machine's loopback socket of this user; see the module doc."""
    host, address = info["host"], info["address"]
    here = socket.gethostname()
    if host != here:
        raise LiveRefused(f"{live_path} names host {host!r}, not this machine ({here!r}): to ask a sweep running "
                          f"elsewhere, pass --address with its Ray address")
    ip, port = loopback_endpoint(address, live_path)
    owner = listener_owner(ip, port)
    if owner is None:
        raise NotLive(f"the sweep is not running (nothing listens at {address})")
    if owner != os.geteuid():
        raise LiveRefused(f"the socket at {address} named in {live_path} belongs to uid {owner} ({_user(owner)}), "
                          f"not to you: memlaw does not send your Ray token there (pass --address {address} if you "
                          f"trust it)")
    return address


def loopback_endpoint(address: str, live_path: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """(ip, port) of a `HOST:PORT` whose host is a loopback IP literal or localhost."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise LiveRefused(f"{live_path}: address must be HOST:PORT with a port in 1-65535, got {address[:100]!r}")
    try:
        ip = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        raise LiveRefused(f"{live_path}: address {address[:100]!r} is not a loopback IP address: memlaw connects "
                          f"--live only to this machine's loopback (pass --address to join another Ray)") from None
    if not ip.is_loopback:
        raise LiveRefused(f"{live_path}: address {address} is not on loopback: memlaw connects --live only to this "
                          f"machine's loopback (pass --address {address} to join that Ray)")
    return ip, int(port_text)


def listener_owner(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> int | None:
    """The uid of the socket listening on ip:port (or on the wildcard address at that port), None
    when nothing listens there. LiveRefused where the system has no /proc/net tables."""
    tables = [t for t in PROC_TABLES if os.path.exists(t)]
    if not tables:
        raise LiveRefused(f"memlaw cannot tell who owns the socket at {ip}:{port} on this system (no /proc/net/tcp): "
                          f"pass --address {ip}:{port} to connect to it")
    owners = {}
    for table in tables:
        for local, state, uid in _rows(table):
            if state == TCP_LISTEN:
                owners[local] = uid
    wildcard = ipaddress.ip_address("::" if ip.version == 6 else "0.0.0.0")
    mapped = ipaddress.ip_address(f"::ffff:{ip}") if ip.version == 4 else None
    for candidate in (ip, mapped, wildcard, ipaddress.ip_address("::")):
        if candidate is not None and (candidate, port) in owners:
            return owners[(candidate, port)]
    return None


def _rows(table: str):
    """((ip, port), state, uid) per socket of a /proc/net/tcp{,6} table."""
    with open(table, encoding="ascii") as fh:
        next(fh, None)  # the header
        for line in fh:
            fields = line.split()
            if len(fields) < 8:
                continue
            ip_hex, port_hex = fields[1].split(":")
            yield (_proc_ip(ip_hex), int(port_hex, 16)), fields[3], int(fields[7])


def _proc_ip(hex_text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The kernel prints an address as 32-bit words in host byte order, each as hex."""
    words = [struct.pack("=I", int(hex_text[i:i + 8], 16)) for i in range(0, len(hex_text), 8)]
    return ipaddress.ip_address(b"".join(words))


def _user(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return "unknown user"
