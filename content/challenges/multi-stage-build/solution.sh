#!/bin/bash
# Solves the challenge: a two-stage Dockerfile, built as site:slim and served on port 8080.
set -euo pipefail
cd /root/site
cat > Dockerfile <<'DOCKERFILE'
FROM labs/python:3.11 AS build
WORKDIR /src
COPY . .
RUN python3 build.py /public

FROM labs/busybox:1.35
COPY --from=build /public /www
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
DOCKERFILE
docker build -q -t site:slim . >/dev/null
old=$(docker ps -q --filter publish=8080)
[ -z "$old" ] || docker rm -f $old >/dev/null
docker run -d --name site -p 8080:8080 site:slim >/dev/null
