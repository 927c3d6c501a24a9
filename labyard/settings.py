"""Where labyard keeps its state and how it sizes playgrounds, read once from the environment."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else default


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    """Database, playground state, SSH keys and runc state live here (one labyard instance)."""

    images_dir: Path
    """Built root filesystems; shared between instances because builds are slow."""

    database_url: str
    """SQLAlchemy URL; SQLite under `data_dir` unless LABYARD_DATABASE_URL says otherwise."""

    subnet_pool: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network("198.18.0.0/16")
    )
    """Each playground gets one /24 from here. 198.18/15 is reserved for benchmarking networks,
    so it does not collide with LANs, VPNs or Docker's defaults inside the machines."""

    default_lifetime_s: int = 3600
    """How long a playground lives when its manifest does not say."""

    start_timeout_s: float = 60.0
    """Longest wait for every machine to answer SSH before a start is rolled back."""

    ports_domain: str | None = None
    """With a domain (LABYARD_PORTS_DOMAIN, e.g. `labs.example.com`), the host name
    `<port>-<machine>-<playground>.<domain>` reaches that port of that machine (wildcard DNS
    and TLS are the operator's). Without one, only the path form `/p/...` does."""

    @property
    def instance(self) -> str:
        """Short tag that marks host resources (links, netns, cgroups, nft) as this instance's,
        so two labyards on one host (a server and a test run) never reap each other's."""
        return hashlib.sha1(str(self.data_dir.resolve()).encode()).hexdigest()[:6]

    @property
    def playgrounds_dir(self) -> Path:
        return self.data_dir / "playgrounds"

    @property
    def runc_root(self) -> Path:
        return self.data_dir / "runc"

    @property
    def locks_dir(self) -> Path:
        return self.data_dir / "locks"

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = _env_path("LABYARD_DATA_DIR", Path("/var/lib/labyard"))
        images_dir = _env_path("LABYARD_IMAGES_DIR", Path("/var/lib/labyard/images"))
        url = os.environ.get("LABYARD_DATABASE_URL") or f"sqlite:///{data_dir / 'labyard.db'}"
        ports_domain = os.environ.get("LABYARD_PORTS_DOMAIN") or None
        return cls(
            data_dir=data_dir, images_dir=images_dir, database_url=url, ports_domain=ports_domain
        )
