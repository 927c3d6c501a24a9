#!/bin/bash
# Solves the challenge: a client with exponential backoff, run against a cold service.
set -euo pipefail
cat > /root/fetch.sh <<'SH'
#!/bin/bash
delay=0.5
for attempt in 1 2 3 4 5 6; do
  curl -fsS -o /root/report.json http://localhost:8000/report && exit 0
  echo "attempt $attempt failed, retrying in ${delay}s" >&2
  sleep "$delay"
  delay=$(awk "BEGIN {print $delay * 2}")
done
exit 1
SH
chmod +x /root/fetch.sh
/root/fetch.sh   # the service has had no request yet: it is cold
