"""Names of everything the local driver makes on the host, derived from the playground id.

Derivable names are what let `destroy` and the reconciler find every piece of a playground
with nothing but its id, even after a crash that lost all other state. Interface names are
limited to 15 characters, hence the terse prefixes: `lyb` bridge, `lyv` host end of a veth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

USERNS_DIR = Path("/run/labyard/userns")


@dataclass(frozen=True)
class HostNames:
    instance: str
    playground_id: str
    playgrounds_dir: Path

    @property
    def link_alias(self) -> str:
        """Set as the alias of every link we create: says whose it is."""
        return f"labyard:{self.instance}:{self.playground_id}"

    @property
    def dir(self) -> Path:
        return self.playgrounds_dir / self.playground_id

    def machine_dir(self, machine: str) -> Path:
        return self.dir / "machines" / machine

    def bridge(self, network_index: int) -> str:
        return f"lyb{self.playground_id}{network_index:x}"

    def veth(self, machine_index: int, network_index: int) -> str:
        return f"lyv{self.playground_id}{machine_index:x}{network_index:x}"

    def veth_peer(self, machine_index: int, network_index: int) -> str:
        """Temporary name of the machine's end until it is renamed ethN inside the netns."""
        return f"lyp{self.playground_id}{machine_index:x}{network_index:x}"

    def netns(self, machine: str) -> str:
        return f"{netns_prefix(self.instance)}{self.playground_id}-{machine}"

    def userns(self, machine: str) -> Path:
        """The kept user namespace of the machine, which owns its network namespace."""
        return USERNS_DIR / self.netns(machine)

    def id_owner(self, machine: str) -> str:
        """How the machine's host id range is labelled in the host-wide registry."""
        return f"{self.instance}/{self.playground_id}/{machine}"

    def container(self, machine: str) -> str:
        return f"{self.playground_id}-{machine}"

    def cgroup(self, machine: str) -> str:
        return f"{cgroup_parent(self.instance)}/{self.container(machine)}"


def netns_prefix(instance: str) -> str:
    return f"labyard-{instance}-"


def cgroup_parent(instance: str) -> str:
    return f"labyard-{instance}"


def playground_of_container(container_id: str) -> str:
    return container_id.split("-", 1)[0]


def nft_table(instance: str) -> str:
    return f"labyard_{instance}"
