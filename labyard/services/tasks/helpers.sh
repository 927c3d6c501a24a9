# labyard check helpers: defined before every task check (run, hintcheck, failcheck) and
# every challenge init task, so scripts can call them. Each returns 0 for "yes" or prints
# the value asked for; they never print errors (a check is looped, noise helps nobody).

# -- Docker (iximiuz-compatible names) ---------------------------------------------------

# Number of containers, running or not.
docker_container_count_total() { docker ps -aq 2>/dev/null | wc -l; }

# Number of running containers.
docker_container_count_running() { docker ps -q 2>/dev/null | wc -l; }

# Succeeds when container ID (id or name) is running.
docker_container_is_running() {
  [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]
}

# The host PID of container ID's main process (empty when not running).
docker_container_pid() {
  local pid
  pid=$(docker inspect -f '{{.State.Pid}}' "$1" 2>/dev/null) || return 1
  [ "$pid" != 0 ] && echo "$pid"
}

# The IP address(es) of container ID, one per network, space separated.
docker_container_ip() {
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$1" \
    2>/dev/null | sed 's/ *$//'
}

# Succeeds when image REF (e.g. nginx:alpine) is present locally.
docker_image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# -- Generic -----------------------------------------------------------------------------

# Succeeds when something listens on TCP port PORT (any address).
port_is_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# Succeeds when a process whose command line matches PATTERN runs (pgrep -f).
process_is_running() { pgrep -f -- "$1" >/dev/null 2>&1; }

# Succeeds when systemd unit UNIT is active.
service_is_active() { systemctl is-active --quiet "$1" 2>/dev/null; }

# Succeeds when file PATH contains a line matching the extended regex REGEX.
file_contains() { grep -Eq -- "$2" "$1" 2>/dev/null; }

# Prints the HTTP status code of URL (000 when nothing answers within 5 s).
http_status() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null || true; }

# Succeeds when URL answers 2xx or 3xx within 5 s.
http_ok() { curl -fsS -o /dev/null -m 5 "$1" >/dev/null 2>&1; }

# Succeeds when a user NAME exists.
user_exists() { id -u "$1" >/dev/null 2>&1; }

# Succeeds when command NAME is on the PATH.
command_exists() { command -v "$1" >/dev/null 2>&1; }
