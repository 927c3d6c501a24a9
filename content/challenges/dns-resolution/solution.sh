#!/bin/bash
# Solves the challenge: pin api.internal, ask /etc/hosts first, add a search domain.
set -euo pipefail
echo '10.20.0.99 api.internal' >> /etc/hosts
sed -i 's/^hosts:.*/hosts:          files dns/' /etc/nsswitch.conf
echo 'search corp.internal' >> /etc/resolv.conf
