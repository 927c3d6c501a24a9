"""The k3s recipe and its playgrounds. This host cannot download k3s, so what is tested is
what an offline host sees: the build refused with what to do, local files checked against
the pinned SHA-256, `labyard image build` without names skipping it and saying why, the
k3s playgrounds in the catalog exactly where their image is built, and Killercoda's
Kubernetes backends mapped to them then."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from labyard.content.killercoda import import_killercoda
from labyard.content.loader import load_item
from labyard.content.models import Tutorial
from labyard.errors import ImageBuildFailed, InvalidInput
from labyard.images import list_images, recipe_names, resolve
from labyard.manifest import builtin_names, external_names, load_manifest
from labyard.services.catalog import Catalog
from tests.conftest import REPO

LABYARD = str(REPO / ".venv/bin/labyard")


def cli(tmp_path: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LABYARD_DATA_DIR": str(tmp_path / "data"),
        "LABYARD_IMAGES_DIR": str(tmp_path / "images"),
        "COLUMNS": "250",
    }
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [LABYARD, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_without_the_files_the_build_is_refused_with_what_to_do(tmp_path: Path) -> None:
    result = cli(tmp_path, "image", "build", "k3s")
    assert result.returncode == ImageBuildFailed.exit_code, result.stderr
    message = " ".join(result.stderr.split())
    assert "image 'k3s' needs k3s (https://github.com/k3s-io/k3s/releases/download/" in message
    assert "which cannot be downloaded here" in message
    assert "labyard image build k3s --file k3s=PATH --file k3s-airgap-images=PATH" in message
    assert [p.name for p in (tmp_path / "images").iterdir()] == [".k3s.lock"]  # nothing else


def test_local_files_must_have_the_pinned_sha256(tmp_path: Path) -> None:
    wrong = tmp_path / "k3s"
    wrong.write_bytes(b"not k3s")
    result = cli(tmp_path, "image", "build", "k3s", "--file", f"k3s={wrong}")
    assert result.returncode == InvalidInput.exit_code, result.stderr
    pinned = resolve("k3s").inputs[0].sha256
    assert f"is not the {pinned} that image 'k3s' pins for k3s" in " ".join(result.stderr.split())
    unknown = cli(tmp_path, "image", "build", "k3s", "--file", f"kubectl={wrong}")
    assert unknown.returncode == InvalidInput.exit_code
    assert "has no build input 'kubectl'" in unknown.stderr


def test_build_without_names_skips_recipes_that_need_outside_files(tmp_path: Path) -> None:
    # No mmdebstrap on this PATH: the first real build fails at once, after the skips.
    result = cli(tmp_path, "image", "build", path=str(tmp_path / "no-tools"))
    message = " ".join(result.stderr.split())
    assert "k3s: skipped (needs files from outside the Debian archive: k3s, k3s-airgap-images;" in (
        message
    )
    assert "ubuntu-noble: skipped (needs http://archive.ubuntu.com/ubuntu" in message
    assert "mmdebstrap is not installed" in message


def test_the_catalog_lists_k3s_playgrounds_exactly_where_their_image_is_built(
    tmp_path: Path,
) -> None:
    # Unbuildable here = needs outside files: every external manifest's images, no other.
    needs_files = {n for n in recipe_names() if resolve(n).inputs}
    assert needs_files == {"k3s"}
    assert external_names() == ["k3s", "k3s-cluster"]
    for name in external_names():
        assert {m.image for m in load_manifest(name).machines} <= needs_files
    for name in builtin_names():
        assert not {m.image for m in load_manifest(name).machines} & needs_files

    images = tmp_path / "images"
    images.mkdir()

    def runnable() -> dict[str, str]:  # what the local driver answers (Driver.images)
        return {i.name: i.owner for i in list_images(images) if i.current}

    assert not {"k3s", "k3s-cluster"} & {e.name for e in Catalog(None, runnable).entries()}
    fake_build(images, "k3s")
    listed = {e.name: e for e in Catalog(None, runnable).entries()}
    assert listed["k3s"].available and listed["k3s-cluster"].available
    assert len(listed["k3s-cluster"].manifest.machines) == 3


def fake_build(images: Path, name: str) -> None:
    """What a finished build leaves (image.json beside a rootfs), without building."""
    recipe = resolve(name)
    target = images / f"{name}-{recipe.digest}"
    (target / "rootfs").mkdir(parents=True)
    meta = {"name": name, "digest": recipe.digest, "recipe": recipe.model_dump(mode="json")}
    (target / "image.json").write_text(json.dumps(meta))


def killercoda(root: Path, imageid: str) -> Path:
    root.mkdir(parents=True)
    index = {
        "title": "Kube",
        "backend": {"imageid": imageid},
        "details": {"steps": [{"title": "One", "text": "one.md"}]},
    }
    (root / "index.json").write_text(json.dumps(index))
    (root / "one.md").write_text("`kubectl get nodes`{{exec}}\n")
    return root


def test_killercoda_kubernetes_maps_to_k3s_when_its_image_is_built(tmp_path: Path) -> None:
    for imageid, built, expected in [
        ("kubernetes-kubeadm-1node", True, "k3s"),
        ("kubernetes-kubeadm-2nodes", True, "k3s-cluster"),
        ("kubernetes-kubeadm-1node", False, "linux"),
    ]:
        source = killercoda(tmp_path / f"{imageid}-{built}", imageid)
        imported = import_killercoda(
            source, tmp_path / f"out-{imageid}-{built}", slug="kube", has_image=lambda _, b=built: b
        )
        front = load_item(imported.index_md).front
        assert isinstance(front, Tutorial)
        playground = front.playground
        name = playground if isinstance(playground, str) else playground.name
        assert name == expected, imported.warnings
