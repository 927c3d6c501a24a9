"""Where labyard keeps its state and how it runs playgrounds, read once from the environment,
grouped by feature: the core, the local and lxd drivers', billing's and the pools'."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from labyard.errors import InvalidInput

DEFAULT_SUBNET_POOL = ipaddress.IPv4Network("198.18.0.0/16")


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else default


def _env_subnet_pool() -> ipaddress.IPv4Network:
    """LABYARD_SUBNET_POOL: an IPv4 CIDR with room for at least one /28 playground network."""
    value = os.environ.get("LABYARD_SUBNET_POOL", "").strip()
    if not value:
        return DEFAULT_SUBNET_POOL
    try:
        pool = ipaddress.IPv4Network(value)
    except ValueError as exc:
        raise InvalidInput(
            f"LABYARD_SUBNET_POOL={value!r} is not an IPv4 network in CIDR form ({exc}); "
            "give one like 198.18.0.0/16"
        ) from exc
    if pool.prefixlen > 28:  # runtime/local/subnets.py: MIN_PREFIX
        raise InvalidInput(
            f"LABYARD_SUBNET_POOL={value!r} is smaller than one playground network (a /28); "
            "give a larger range, like 198.18.0.0/16"
        )
    return pool


def _env_number(name: str, default: str, fits: Callable[[Decimal], bool], wanted: str) -> Decimal:
    """The number in environment variable `name` (`default` when unset), or InvalidInput
    naming it, its value and `wanted` (what would do) when it is none or `fits` says no."""
    value = os.environ.get(name, "").strip() or default
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not (number.is_finite() and fits(number)):
        raise InvalidInput(f"{name}={value!r} is not {wanted}")
    return number


def _env_tax_rate() -> Decimal:
    """LABYARD_TAX_RATE_PERCENT: a percentage from 0 up to (not including) 100."""
    return _env_number(
        "LABYARD_TAX_RATE_PERCENT",
        "0",
        lambda rate: 0 <= rate < 100,
        "a tax rate in percent; give one from 0 to 99.99, like 19 or 7.7",
    )


def _env_reconcile_interval() -> float:
    """LABYARD_RECONCILE_INTERVAL_S: seconds between reconciler rounds, above 0 (a day at most)."""
    seconds = _env_number(
        "LABYARD_RECONCILE_INTERVAL_S",
        "15",
        lambda seconds: 0 < seconds <= 86400,
        "a number of seconds; give one above 0 and at most a day, like 15 or 2.5",
    )
    return float(seconds)


def _env_pools() -> tuple[tuple[str, int], ...]:
    """LABYARD_POOLS: `NAME=COUNT` pairs, comma-separated (`linux=2,docker=1`): catalog
    entries to keep that many playgrounds of warm, so their starts are claims."""
    value = os.environ.get("LABYARD_POOLS", "").strip()
    pools: dict[str, int] = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        name, _, count = entry.partition("=")
        name, count = name.strip(), count.strip()
        if not (name and count.isdigit() and int(count) <= 100):
            raise InvalidInput(
                f"LABYARD_POOLS entry {entry!r} is not NAME=COUNT with a count from 0 to 100; "
                "give entries like linux=2,docker=1"
            )
        pools[name] = int(count)
    return tuple(pools.items())


def _env_lines(name: str) -> str:
    """A multi-line value: real newlines, or a literal `\\n` (env files hold one line)."""
    return os.environ.get(name, "").replace("\\n", "\n").strip()


@dataclass(frozen=True)
class LocalSettings:
    """The local driver's own (runtime/local): how it lays machines out on this host."""

    subnet_pool: ipaddress.IPv4Network = field(default_factory=lambda: DEFAULT_SUBNET_POOL)
    """Each playground network gets an aligned block from here (LABYARD_SUBNET_POOL), sized by
    its machines: a /28 for up to 13, so a /16 holds 4,096 one-network playgrounds. 198.18/15
    is reserved for benchmarking networks, so it does not collide with LANs, VPNs or Docker's
    defaults inside the machines."""

    id_ranges_dir: Path = Path("/var/lib/labyard/id-ranges")
    """Which machine holds which host uid/gid range (LABYARD_ID_RANGES_DIR): host-wide, like
    the ranges themselves, so every labyard instance on the host must share it."""

    kvm: bool = False
    """Give machines /dev/kvm (LABYARD_KVM=1), for nested VMs; off by default."""

    egress_allow: tuple[str, ...] = ()
    """Destinations egress reaches even in private ranges (LABYARD_EGRESS_ALLOW, comma-separated
    `HOST[:PORT]` or CIDR, e.g. `10.1.2.3:443,registry.lan`); names resolve at each start."""

    @classmethod
    def from_env(cls) -> LocalSettings:
        allow = tuple(e.strip() for e in os.environ.get("LABYARD_EGRESS_ALLOW", "").split(","))
        return cls(
            subnet_pool=_env_subnet_pool(),
            id_ranges_dir=_env_path("LABYARD_ID_RANGES_DIR", Path("/var/lib/labyard/id-ranges")),
            kvm=os.environ.get("LABYARD_KVM", "") in ("1", "true", "yes"),
            egress_allow=tuple(entry for entry in allow if entry),
        )


DEFAULT_LXD_SOCKETS = (
    Path("/var/lib/incus/unix.socket"),
    Path("/var/snap/lxd/common/lxd/unix.socket"),
    Path("/var/lib/lxd/unix.socket"),
)


@dataclass(frozen=True)
class LxdSettings:
    """The lxd driver's own (runtime/lxd): which LXD or Incus server (or cluster) runs the
    machines, and where in it. Subnets and egress follow the local group's
    LABYARD_SUBNET_POOL and LABYARD_EGRESS_ALLOW, which mean the same for every driver."""

    url: str = ""
    """LABYARD_LXD_URL: `unix:///var/lib/lxd/unix.socket` or `https://host:8443` (any member
    of a cluster). Empty: the first of Incus's, the snap's and Debian's sockets that exists."""
    client_cert: Path | None = None
    """LABYARD_LXD_CLIENT_CERT and LABYARD_LXD_CLIENT_KEY: the certificate labyard proves
    itself with over HTTPS (`lxc config trust add` it on the server)."""
    client_key: Path | None = None
    server_cert: Path | None = None
    """LABYARD_LXD_SERVER_CERT: pin the server (a cluster's `cluster.crt`) instead of trusting
    the system's certificate authorities."""
    project: str = "labyard"
    """LABYARD_LXD_PROJECT: the LXD project that holds this labyard's machines and images; one
    per labyard instance (two labyards on one project would reap each other's machines)."""
    pool: str = "default"
    """LABYARD_LXD_POOL: the storage pool machines' disks are made in. It must keep disk
    limits (btrfs, zfs or lvm): on a `dir` pool every start is refused, naming the pool."""

    def server_url(self) -> str:
        if self.url:
            return self.url
        found = next((s for s in DEFAULT_LXD_SOCKETS if s.exists()), DEFAULT_LXD_SOCKETS[-1])
        return f"unix://{found}"

    @classmethod
    def from_env(cls) -> LxdSettings:
        def path(name: str) -> Path | None:
            value = os.environ.get(name, "").strip()
            return Path(value) if value else None

        return cls(
            url=os.environ.get("LABYARD_LXD_URL", "").strip(),
            client_cert=path("LABYARD_LXD_CLIENT_CERT"),
            client_key=path("LABYARD_LXD_CLIENT_KEY"),
            server_cert=path("LABYARD_LXD_SERVER_CERT"),
            project=os.environ.get("LABYARD_LXD_PROJECT", "").strip() or "labyard",
            pool=os.environ.get("LABYARD_LXD_POOL", "").strip() or "default",
        )


@dataclass(frozen=True)
class BillingSettings:
    """Who sells, how buyers pay and how invoices read (services/billing)."""

    stripe_secret_key: str = field(default="", repr=False)
    """LABYARD_STRIPE_SECRET_KEY (`sk_live_...`): with it, checkout goes through Stripe;
    without it, through the manual provider (an admin marks orders paid)."""

    stripe_webhook_secret: str = field(default="", repr=False)
    """LABYARD_STRIPE_WEBHOOK_SECRET (`whsec_...`): the webhook endpoint's signing secret."""

    stripe_api_base: str = ""
    """LABYARD_STRIPE_API_BASE: where Stripe's API is (empty: the real one,
    https://api.stripe.com); the tests point it at a local stand-in."""

    seller_name: str = ""
    """LABYARD_SELLER_NAME: who sells, as invoices print it (a company, or a person)."""

    seller_address: str = ""
    """LABYARD_SELLER_ADDRESS: the seller's postal address, one line per line (newlines, or
    a literal `\\n` between lines)."""

    seller_vat_id: str = ""
    """LABYARD_SELLER_VAT_ID: the seller's VAT (or other tax) number, printed on invoices."""

    seller_email: str = ""
    """LABYARD_SELLER_EMAIL: where buyers write about an invoice."""

    tax_rate_percent: Decimal = Decimal(0)
    """LABYARD_TAX_RATE_PERCENT: the tax rate invoices show when the payment provider
    reported no tax (manual orders; Stripe without Stripe Tax). Plan prices include it: at
    20, a 15.00 price is 12.50 net plus 2.50 tax. 0 by default."""

    tax_label: str = "VAT"
    """LABYARD_TAX_LABEL: what invoices call the tax (`VAT`, `GST`, `Sales tax`)."""

    @classmethod
    def from_env(cls) -> BillingSettings:
        return cls(
            stripe_secret_key=os.environ.get("LABYARD_STRIPE_SECRET_KEY", ""),
            stripe_webhook_secret=os.environ.get("LABYARD_STRIPE_WEBHOOK_SECRET", ""),
            stripe_api_base=os.environ.get("LABYARD_STRIPE_API_BASE", "").rstrip("/"),
            seller_name=os.environ.get("LABYARD_SELLER_NAME", "").strip(),
            seller_address=_env_lines("LABYARD_SELLER_ADDRESS"),
            seller_vat_id=os.environ.get("LABYARD_SELLER_VAT_ID", "").strip(),
            seller_email=os.environ.get("LABYARD_SELLER_EMAIL", "").strip(),
            tax_rate_percent=_env_tax_rate(),
            tax_label=os.environ.get("LABYARD_TAX_LABEL", "").strip() or "VAT",
        )


@dataclass(frozen=True)
class PoolSettings:
    """Warm pools (services/pools.py)."""

    warm: tuple[tuple[str, int], ...] = ()
    """LABYARD_POOLS (`linux=2,docker=1`): per catalog entry, how many playgrounds to keep
    warm, so a start of it claims one instead of booting. None by default."""

    @classmethod
    def from_env(cls) -> PoolSettings:
        return cls(warm=_env_pools())


@dataclass(frozen=True)
class Settings:
    """Where labyard keeps its state and how it runs playgrounds; each feature's own
    settings are a group of their own (`local`, `lxd`, `billing`, `pools`)."""

    data_dir: Path
    """Database, playground state, SSH keys and runc state live here (one labyard instance)."""

    images_dir: Path
    """Built root filesystems; shared between instances because builds are slow."""

    database_url: str
    """SQLAlchemy URL; SQLite under `data_dir` unless LABYARD_DATABASE_URL says otherwise."""

    driver: str = "local"
    """Which runtime runs the machines (LABYARD_DRIVER): `local`, runc system containers on
    this host; `lxd`, system containers on an LXD or Incus server or cluster (the `lxd`
    group); `fake`, plain processes answering SSH, for tests and demos only."""

    default_lifetime_s: int = 3600
    """How long a playground lives when its manifest does not say."""

    start_timeout_s: float = 60.0
    """Longest wait for every machine to answer SSH before a start is rolled back."""

    ports_domain: str | None = None
    """With a domain (LABYARD_PORTS_DOMAIN, e.g. `labs.example.com`), the host name
    `<port>-<machine>-<playground>.<domain>` reaches that port of that machine (wildcard DNS
    and TLS are the operator's). Without one, only the path form `/p/...` does."""

    reconcile_interval_s: float = 15.0
    """Seconds between reconciler rounds in the server (LABYARD_RECONCILE_INTERVAL_S);
    /healthz turns unhealthy when no round has succeeded for three of them."""

    local: LocalSettings = field(default_factory=LocalSettings)
    lxd: LxdSettings = field(default_factory=LxdSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    pools: PoolSettings = field(default_factory=PoolSettings)

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
        url = os.environ.get("LABYARD_DATABASE_URL") or f"sqlite:///{data_dir / 'labyard.db'}"
        return cls(
            data_dir=data_dir,
            images_dir=_env_path("LABYARD_IMAGES_DIR", Path("/var/lib/labyard/images")),
            database_url=url,
            driver=os.environ.get("LABYARD_DRIVER", "").strip() or "local",
            ports_domain=os.environ.get("LABYARD_PORTS_DOMAIN") or None,
            reconcile_interval_s=_env_reconcile_interval(),
            local=LocalSettings.from_env(),
            lxd=LxdSettings.from_env(),
            billing=BillingSettings.from_env(),
            pools=PoolSettings.from_env(),
        )
