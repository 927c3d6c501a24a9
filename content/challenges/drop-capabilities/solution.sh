#!/bin/bash
# Solves the challenge: edge with one capability and a read-only root, and its CapEff noted.
set -euo pipefail
docker rm -f edge >/dev/null
docker run -d --name edge --network host \
  --cap-drop ALL --cap-add NET_BIND_SERVICE --read-only labs/edge:1.0 >/dev/null
for _ in $(seq 50); do curl -fsS -o /dev/null http://localhost/ && break; sleep 0.1; done
pid=$(docker inspect -f '{{.State.Pid}}' edge)
awk '/^CapEff:/ {print $2}' "/proc/$pid/status" > /root/capeff.txt
