"""Start latency before and after a change, in one run on this machine.

"before" is a git revision (default: HEAD, the last commit) checked out in a temporary git
worktree under /tmp; "after" is this working tree, copied at the start (labyard/ and
bench/start_latency.py) so edits made while it runs do not leak into later rounds. Both
sides run that same copy of bench/start_latency.py with this .venv's python; PYTHONPATH
decides which labyard it imports. Rounds alternate (before, after, before, after, ...) so
drift on the host hits both sides alike; the samples of all rounds are pooled per side.

Run as root: `.venv/bin/python bench/before_after.py`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
PLAYGROUNDS = ("linux", "linux-cluster", "docker")
GATED = ("linux", "linux-cluster")
"""Playgrounds held to the targets below."""
MAX_GROWTH_PCT = 10.0
"""Median start -> first exec may grow by at most this much, before -> after."""
IDLE_MAX_MIB = 40.0
"""Idle working set per machine, after."""

# Run with a side's PYTHONPATH: which labyard it imports, and which images it lacks.
PROBE = """
import json, os, sys
from pathlib import Path
import labyard
from labyard.errors import NotFound
from labyard.images import find_image
from labyard.manifest import load_manifest
images = Path(os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images"))
missing = []
for name in sorted({m.image for n in sys.argv[1:] for m in load_manifest(n).machines}):
    try:
        find_image(images, name)
    except NotFound:
        missing.append(name)
print(json.dumps({"labyard": labyard.__file__, "missing": missing}))
"""

console = Console(stderr=True)


@dataclass
class Side:
    name: str
    root: Path
    """Where its labyard package is imported from (PYTHONPATH)."""
    label: str
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.root)}


# -- git and the two trees -----------------------------------------------------------------


def git(*args: str) -> str:
    """A read-only git command in the repo (no optional locks: others work in this tree)."""
    result = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"error: git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """A detached `git worktree` of `commit` under /tmp, removed again afterwards."""
    path = Path(tempfile.mkdtemp(prefix="labyard-before-"))
    try:
        git("worktree", "add", "--detach", "--quiet", str(path), commit)
    except SystemExit:
        path.rmdir()
        raise
    try:
        yield path
    finally:
        removed = subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            capture_output=True,
            check=False,
        )
        if removed.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            console.print(
                f"[yellow]note[/]: could not remove worktree {path}; run `git worktree prune`"
            )


@contextlib.contextmanager
def snapshot() -> Iterator[Path]:
    """This working tree's labyard/ and bench/start_latency.py, copied to /tmp."""
    path = Path(tempfile.mkdtemp(prefix="labyard-after-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(REPO / "labyard", path / "labyard", ignore=ignore)
        (path / "bench").mkdir()
        shutil.copy2(REPO / "bench/start_latency.py", path / "bench/start_latency.py")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- preparing a side ----------------------------------------------------------------------


def probe(side: Side, names: Sequence[str]) -> list[str]:
    """Check that the side imports its own labyard; returns the images it lacks."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *names],
        env=side.env(),
        cwd=side.root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"error: {side.name}: labyard does not import:\n{result.stderr}")
    found = json.loads(result.stdout)
    imported = Path(found["labyard"]).resolve()
    if not imported.is_relative_to(side.root.resolve() / "labyard"):
        sys.exit(f"error: {side.name}: `import labyard` gave {imported}, not {side.root}")
    console.print(f"{side.name}: labyard from {imported.parent}")
    return list(found["missing"])


def ensure_images(side: Side, names: Sequence[str]) -> None:
    """Build, with the side's own code, the images its recipes need and that are missing."""
    missing = probe(side, names)
    if not missing:
        return
    console.print(f"{side.name}: building {', '.join(missing)} (its recipes differ)")
    labyard_cli = Path(sys.executable).with_name("labyard")
    built = subprocess.run(
        [str(labyard_cli), "image", "build", *missing], env=side.env(), cwd=side.root
    )
    if built.returncode != 0 or probe(side, names):
        sys.exit(f"error: {side.name}: building {', '.join(missing)} failed")


# -- the rounds ----------------------------------------------------------------------------


def _child_signals() -> None:
    # Its own session, so a Ctrl-C reaches it once, from us; and SIGINT not ignored (as it
    # is under a non-interactive shell's `&`), so that it cleans up on that Ctrl-C.
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_child(command: list[str], side: Side) -> int:
    """Run start_latency.py; on Ctrl-C, pass it on and wait for its clean-up."""
    child = subprocess.Popen(command, env=side.env(), cwd=side.root, preexec_fn=_child_signals)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        while True:
            try:
                child.wait()
                break
            except KeyboardInterrupt:
                console.print("waiting for start_latency.py to remove what it started…")
        raise


def one_round(args: argparse.Namespace, side: Side, script: Path, index: int, out: Path) -> None:
    result = out / f"{side.name}-{index + 1}.json"
    command = [sys.executable, str(script), "--runs", str(args.runs)]
    command += ["--playgrounds", ",".join(args.names), "--json", str(result)]
    if side.name == "after" and args.peer:
        command += ["--peer", "lxc"]
    if args.trace and index == args.rounds - 1:
        command.append("--trace")
    console.rule(f"round {index + 1}/{args.rounds}: {side.name} ({side.label})")
    code = run_child(command, side)
    if code != 0:
        sys.exit(f"error: start_latency.py for {side.name} exited {code}")
    side.rounds.append(json.loads(result.read_text()))


# -- pooling and reporting -----------------------------------------------------------------


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def pooled(side: Side, name: str) -> dict[str, Any]:
    """One playground's samples of every round of a side, summarized."""
    rows = [r[name] for r in side.rounds]
    lat = [s for row in rows for s in row["samples_s"]]
    idle = [s for row in rows for s in row["idle_samples_mib"]]
    summary: dict[str, Any] = {
        "median_s": round(statistics.median(lat), 3),
        "p95_s": round(nearest_rank(lat, 95), 3),
        "runs": len(lat),
        "idle_machine_mib": round(statistics.median(idle), 1),
        "round_medians_s": [row["median_s"] for row in rows],
    }
    docker = [s for row in rows for s in row.get("docker_info_samples_s", [])]
    if docker:
        summary["docker_info_median_s"] = round(statistics.median(docker), 3)
        summary["docker_info_p95_s"] = round(nearest_rank(docker, 95), 3)
    return summary


def pooled_peer(side: Side) -> dict[str, Any] | None:
    peers = [r["peer_lxc"] for r in side.rounds if "peer_lxc" in r]
    if not peers:
        return None
    lxc = statistics.median(s for p in peers for s in p["lxc_samples_s"])
    ours = statistics.median(s for p in peers for s in p["labyard_samples_s"])
    states = {
        key: sum((Counter(p[key]) for p in peers), Counter())
        for key in ("lxc_states", "labyard_states")
    }
    return {
        "lxc_running_median_s": round(lxc, 3),
        "labyard_running_median_s": round(ours, 3),
        "ratio": round(ours / lxc, 2),
        "runs": sum(p["runs"] for p in peers),
        "lxc_states": dict(states["lxc_states"]),
        "labyard_states": dict(states["labyard_states"]),
    }


def change_pct(before: float, after: float) -> float:
    return round((after - before) / before * 100, 1)


def checks(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for name in (n for n in GATED if n in summary):
        row = summary[name]
        found.append(
            {
                "check": f"{name} median start -> first exec growth %",
                "value": row["change_pct"],
                "target": MAX_GROWTH_PCT,
                "pass": row["change_pct"] <= MAX_GROWTH_PCT,
            }
        )
        idle = row["after"]["idle_machine_mib"]
        found.append(
            {
                "check": f"{name} idle MiB per machine (after)",
                "value": idle,
                "target": IDLE_MAX_MIB,
                "pass": idle <= IDLE_MAX_MIB,
            }
        )
    return found


def print_report(
    summary: dict[str, dict[str, Any]], peer: dict[str, Any] | None, found: list[dict[str, Any]]
) -> None:
    out = Console()
    table = Table(title="start -> first exec on every machine: median s (pooled over rounds)")
    for column in ("playground", "before", "after", "change", "idle MiB b/a", "docker info b/a"):
        table.add_column(column, justify="left" if column == "playground" else "right")
    for name, row in summary.items():
        before, after = row["before"], row["after"]
        docker = ""
        if "docker_info_median_s" in after:
            docker = f"{before['docker_info_median_s']} / {after['docker_info_median_s']}"
        table.add_row(
            name,
            f"{before['median_s']}",
            f"{after['median_s']}",
            f"{row['change_pct']:+.1f} %",
            f"{before['idle_machine_mib']} / {after['idle_machine_mib']}",
            docker,
        )
    out.print(table)
    if peer is not None:
        out.print(
            "peer lxc, after (start -> `systemctl is-system-running` past `starting`): "
            f"lxc {peer['lxc_running_median_s']} s {peer['lxc_states']}, labyard "
            f"{peer['labyard_running_median_s']} s {peer['labyard_states']}, "
            f"ratio {peer['ratio']}"
        )
    for check in found:
        verdict = "[green]PASS[/]" if check["pass"] else "[red]MISS[/]"
        out.print(f"  {verdict}  {check['check']} = {check['value']} (<= {check['target']})")


def summarize(names: Sequence[str], before: Side, after: Side) -> dict[str, dict[str, Any]]:
    summary = {}
    for name in names:
        b, a = pooled(before, name), pooled(after, name)
        summary[name] = {
            "before": b,
            "after": a,
            "change_pct": change_pct(b["median_s"], a["median_s"]),
        }
    return summary


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="HEAD", help="git revision of the 'before' side")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (each: before, after)")
    parser.add_argument("--runs", type=int, default=6, help="timed runs per playground per round")
    parser.add_argument("--playgrounds", default=",".join(PLAYGROUNDS), help="comma-separated")
    parser.add_argument(
        "--no-peer", dest="peer", action="store_false", help="skip the LXC peer (after side)"
    )
    parser.add_argument("--trace", action="store_true", help="--trace in each side's last round")
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/before_after.json", help="output"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.runs < 1:
        parser.error("--rounds and --runs must be at least 1")
    args.names = [n.strip() for n in args.playgrounds.split(",") if n.strip()]
    if not args.names:
        parser.error("--playgrounds: give at least one")
    return args


def preflight(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        sys.exit("error: labyard runs runc, netns and nftables: run this benchmark as root")
    if args.peer and shutil.which("lxc-start") is None:
        sys.exit(
            "error: the LXC peer needs Debian's lxc package (lxc-start is missing). "
            "Install it first: apt-get install -y lxc (or pass --no-peer)"
        )


def measure(
    args: argparse.Namespace, commit: str, before_root: Path, after_root: Path
) -> dict[str, Any]:
    dirty = len(git("status", "--porcelain").splitlines())
    before = Side("before", before_root, git("log", "-1", "--format=%h %s", commit)[:60])
    after = Side("after", after_root, f"working tree: {dirty} changed or new paths")
    sides = (before, after)
    needed = [*args.names, *(["linux"] if args.peer else [])]
    for side in sides:
        ensure_images(side, needed)
    script = after_root / "bench/start_latency.py"
    with tempfile.TemporaryDirectory(prefix="labyard-rounds-") as out:
        for index in range(args.rounds):
            for side in sides:
                one_round(args, side, script, index, Path(out))
                save(args.json, {"partial": True, "raw": {s.name: s.rounds for s in sides}})
    summary = summarize(args.names, before, after)
    peer = pooled_peer(after)
    found = checks(summary)
    print_report(summary, peer, found)
    return {
        "before": {"rev": commit, "label": before.label},
        "after": {"label": after.label, "head": git("rev-parse", "HEAD")},
        "rounds": args.rounds,
        "runs_per_round": args.runs,
        "playgrounds": summary,
        "peer_lxc": peer,
        "checks": found,
        "machine": after.rounds[0]["machine"],
        "loadavg_per_round": {
            s.name: [r["machine"]["loadavg_at_start"] for r in s.rounds] for s in sides
        },
        "raw": {s.name: s.rounds for s in sides},
    }


def save(path: Path, data: dict[str, Any]) -> None:
    """Written after every round too (`partial`), so a late failure keeps the samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    preflight(args)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    commit = git("rev-parse", "--verify", f"{args.before}^{{commit}}")
    try:
        with worktree(commit) as before_root, snapshot() as after_root:
            result = measure(args, commit, before_root, after_root)
    except KeyboardInterrupt:
        sys.exit("interrupted: worktree and snapshot removed")
    save(args.json, result)
    Console().print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
