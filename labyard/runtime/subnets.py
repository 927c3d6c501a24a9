"""Sizing playground subnets and finding free, aligned blocks for them in the pool.

A network's block holds its network address, the gateway (the bridge, `.1`), one address per
machine (`.2 + machine index`) and the broadcast address, rounded up to a power of two and
never smaller than a /28 (16 addresses, room for 13 machines). That floor is the headroom:
a /29 or /30 would save addresses the pool has plenty of, while every block of one size
keeps the pool unfragmented for the common playgrounds of 1-13 machines. A /16 pool thus
holds 4,096 one-network playgrounds instead of the 256 it held at a /24 each.

Blocks are found by one sweep over the host's networks sorted by start: O(n log n) for n
networks on the host, whatever the mix of block sizes, with no candidate-by-candidate rescan.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from labyard.errors import LimitExceeded

MIN_PREFIX = 28
"""The smallest block a network gets: /28, 16 addresses, 13 machines."""

RESERVED = 3
"""Addresses in every block that no machine gets: network, gateway and broadcast."""


def prefix_for(hosts: int) -> int:
    """The prefix length of the smallest block for `hosts` machine addresses (at most /28)."""
    needed = hosts + RESERVED
    return min(MIN_PREFIX, 32 - (needed - 1).bit_length())


def free_block(
    pool: ipaddress.IPv4Network, prefix: int, used: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network | None:
    """The lowest /`prefix` block of `pool` that overlaps none of `used`, or None."""
    if prefix < pool.prefixlen:
        return None
    size = 1 << (32 - prefix)
    end = int(pool.broadcast_address) + 1
    candidate = int(pool.network_address)  # aligned: the pool is, and is at least as large
    taken = sorted(
        (int(u.network_address), int(u.broadcast_address) + 1) for u in used if u.overlaps(pool)
    )
    for start, stop in taken:
        if stop <= candidate:
            continue  # wholly below the candidate (sorted by start, not by stop)
        if start >= candidate + size:
            break  # every later network starts later still: the candidate is free
        candidate = -(-stop // size) * size  # the next aligned block past this network
        if candidate + size > end:
            return None
    if candidate + size > end:
        return None
    return ipaddress.IPv4Network((candidate, prefix))


def allocate(
    pool: ipaddress.IPv4Network, hosts: int, used: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network:
    """A free block for a network of `hosts` machine addresses; LimitExceeded when none is."""
    prefix = prefix_for(hosts)
    block = free_block(pool, prefix, used)
    if block is None:
        raise LimitExceeded(
            f"no free /{prefix} subnet left in the playground address pool {pool}: "
            f"this host runs as many playgrounds as the pool holds; set LABYARD_SUBNET_POOL "
            "to a larger range to run more",
            reason="subnet_pool_exhausted",
        )
    return block
