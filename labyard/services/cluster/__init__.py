"""Running on several servers: regions and the members that make them.

    regions.py   the operator's regions file: cluster groups, and the countries each serves
    members.py   the cluster as the operator sees it (members, regions) and draining a member

Placement itself is the driver's (runtime/lxd): a start asks for the learner's region
(`PlaygroundSpec.region`), and the driver says when it had to run it elsewhere.

(members.py is imported from its own module, not from here: it uses the playgrounds
service, which itself reads the regions file.)
"""

from labyard.services.cluster.regions import Region, Regions, load_regions

__all__ = ["Region", "Regions", "load_regions"]
