"""Which country an IP address is in, offline: `iptocc` (MIT or Apache-2.0), whose wheel
embeds the five Regional Internet Registries' delegation files (refreshed with each release),
so a lookup reads no file and asks no server. It gives the country a block is registered
to, which agrees with commercial geolocation for about 95 % of IPv4 addresses: good enough
to pick a price tier, and the card's country is checked at payment anyway.

Private, loopback, link-local, reserved and documentation addresses have no country.
"""

from __future__ import annotations

import ipaddress

from iptocc import country_code


def country_of(address: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code of a public IP address, or None when it cannot be told."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global:
        return None
    found = country_code(str(ip))
    return found.upper() if isinstance(found, str) and len(found) == 2 else None
