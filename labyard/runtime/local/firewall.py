"""nftables rules that keep playgrounds apart from each other and from the host.

One table per labyard instance. Only `drop` is final across nftables tables, so isolation
is built from drops: a playground's packets may go to its own bridge and, when egress is
on, out through NAT; never into another playground's bridge, to the host itself, or to a
private, link-local or host address (egress.py: BLOCKED) unless the operator allowed it.

    forward:  iifname vmap @bridges          -> per-bridge chain br_<bridge>
              outside -> "lyb*" established   accept (replies to NATed egress)
              outside -> "lyb*"               drop   (nothing from outside starts inside)
              (bridges of other instances are left to their own instance's table)
    br_<b>:   oifname "<b>" accept; oifname "lyb*" drop; spoofed source drop;
              IPv6 drop (machines get no IPv6 beyond their bridge);
              host's own, broadcast and multicast addresses drop (fib: never allowed);
              [no egress: drop]
              resolvers :53 accept; operator-allowed accept; BLOCKED drop;
              [manifest list: listed accept; drop]
    input:    iifname "lyb*" established accept; iifname "lyb*" drop   (host services)
    postrouting (nat): ip saddr @egress_nets oifname != "lyb*" masquerade

All of br_<b> is filter, in the forward hook: a destination is dropped before NAT sees it.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

from labyard.errors import RuntimeFailure
from labyard.runtime.egress import BLOCKED, Policy, Target
from labyard.runtime.local.network import host_lock

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def _nft(script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            ["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise RuntimeFailure("nft is not installed; run scripts/setup.sh first") from exc
    if check and result.returncode != 0:
        raise RuntimeFailure("cannot update the firewall (nftables)", detail=result.stderr)
    return result


def _table_script(table: str) -> str:
    return f"""
table inet {table} {{
  set egress_nets {{ type ipv4_addr; flags interval; }}
  map bridges {{ type ifname : verdict; }}
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
    iifname vmap @bridges
    iifname != "lyb*" oifname "lyb*" ct state established,related accept
    iifname != "lyb*" oifname "lyb*" drop
  }}
  chain input {{
    type filter hook input priority filter - 5; policy accept;
    iifname "lyb*" ct state established,related accept
    iifname "lyb*" drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat + 5; policy accept;
    oifname != "lyb*" ip saddr @egress_nets masquerade
  }}
}}
"""


def _table_exists(table: str) -> bool:
    result = subprocess.run(
        ["nft", "list", "table", "inet", table], capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def add_bridge(
    table: str, bridge: str, subnet: ipaddress.IPv4Network, egress: Policy | None
) -> None:
    """Admit a playground network, or renew its egress rules (names resolved afresh)."""
    chain = f"br_{bridge}"
    rules = [
        f'oifname "{bridge}" accept',
        'oifname "lyb*" drop',
        f"ip saddr != {subnet} drop",
        "meta nfproto ipv6 counter drop",
        "fib daddr type { local, broadcast, multicast } counter drop",
        *_egress_rules(egress),
    ]
    script = [
        f"add chain inet {table} {chain}",
        f"flush chain inet {table} {chain}",  # one transaction: never a moment without rules
        *(f"add rule inet {table} {chain} {rule}" for rule in rules),
        f'add element inet {table} bridges {{ "{bridge}" : jump {chain} }}',
    ]
    if egress is not None:
        script.append(f"add element inet {table} egress_nets {{ {subnet} }}")
    with host_lock():
        if not _table_exists(table):
            _nft(_table_script(table))
        _nft("\n".join(script) + "\n")
    if egress is not None and IP_FORWARD.read_text().strip() != "1":
        IP_FORWARD.write_text("1\n")  # NAT needs the host to route; nothing is routed unasked


def _egress_rules(egress: Policy | None) -> list[str]:
    if egress is None:
        return ["drop"]
    rules = []
    if egress.resolvers:
        servers = ", ".join(str(r) for r in egress.resolvers)
        rules.append(f"ip daddr {{ {servers} }} meta l4proto {{ tcp, udp }} th dport 53 accept")
    rules += [f"{_match(target)} accept" for target in egress.allowed]
    rules.append(f"ip daddr {{ {', '.join(str(n) for n in BLOCKED)} }} counter drop")
    if egress.only is not None:
        rules += [f"{_match(target)} accept" for target in egress.only]
        rules.append("drop")
    return rules


def _match(target: Target) -> str:
    match = f"ip daddr {target.network}"
    if target.port is not None:
        match += f" meta l4proto {{ tcp, udp }} th dport {target.port}"
    return match


def remove_bridges(table: str, bridges: list[str]) -> None:
    """Forget these bridges' rules; bridges that have none are skipped."""
    with host_lock():
        if not _table_exists(table):
            return
        listing = _nft(f"list table inet {table}\n").stdout
        script: list[str] = []
        for bridge in bridges:
            chain = f"br_{bridge}"
            if f"chain {chain} " not in listing:
                continue
            script.append(f'delete element inet {table} bridges {{ "{bridge}" }}')
            subnet = _chain_subnet(listing, chain)
            if subnet and _egress_has(listing, subnet):
                script.append(f"delete element inet {table} egress_nets {{ {subnet} }}")
            script += [f"flush chain inet {table} {chain}", f"delete chain inet {table} {chain}"]
        if script:
            _nft("\n".join(script) + "\n")


def _chain_subnet(listing: str, chain: str) -> str | None:
    match = re.search(rf"chain {chain} {{[^}}]*ip saddr != (\S+) drop", listing)
    return match.group(1) if match else None


def _egress_has(listing: str, subnet: str) -> bool:
    match = re.search(r"set egress_nets {[^}]*elements = {([^}]*)}", listing)
    return match is not None and subnet in match.group(1)


def bridges_with_rules(table: str) -> list[str]:
    if not _table_exists(table):
        return []
    listing = _nft(f"list table inet {table}\n").stdout
    return re.findall(r"chain br_(lyb\w+) {", listing)


def remove_table(table: str) -> None:
    with host_lock():
        if _table_exists(table):
            _nft(f"delete table inet {table}\n")
