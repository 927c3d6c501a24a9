#!/bin/bash
# Solves the challenge: red and blue joined by a veth pair, a web server in blue.
set -euo pipefail
ip netns add red
ip netns add blue
ip link add veth-red type veth peer name veth-blue
ip link set veth-red netns red
ip link set veth-blue netns blue
ip -n red addr add 10.0.0.1/24 dev veth-red
ip -n blue addr add 10.0.0.2/24 dev veth-blue
ip -n red link set veth-red up
ip -n blue link set veth-blue up
# In the background without holding this shell's output open.
ip netns exec blue python3 -m http.server 8000 --directory /tmp </dev/null >/dev/null 2>&1 &
for _ in $(seq 50); do ip netns exec blue ss -Hltn 'sport = :8000' | grep -q . && break; sleep 0.1; done
