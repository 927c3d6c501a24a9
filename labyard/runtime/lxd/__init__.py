"""The lxd driver: machines as system containers on an LXD (>= 5.0) or Incus (>= 6.0) server
or cluster (docs/cluster.md).

    driver.py    the Driver: start, status, dial, stop, destroy, adopt; save-as; the
                 Cluster capability's face
    client.py    /1.0 over the unix socket or HTTPS: requests, operations, LXD or Incus
    config.py    what is asked of LXD: instance, bridge and ACL bodies, names and labels
    bridges.py   playground networks: bridges made ahead and reused, egress in their ACLs
    members.py   the cluster's members, their memory and addresses; placement by region
    images.py    built images uploaded once per server; saved images
"""
