"""Image recipes: loading, `extends`, and the content digest that decides rebuilds."""

from __future__ import annotations

from pathlib import Path

import pytest

from labyard.errors import ImageBuildFailed, ManifestError, NotFound
from labyard.images import build_image
from labyard.images.recipe import RECIPES_DIR, load_recipe, recipe_names, resolve


def write(recipes: Path, name: str, text: str) -> None:
    (recipes / f"{name}.yaml").write_text(text)


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    write(tmp_path, "base", "name: base\npackages: [curl, jq]\nsetup: echo base\n")
    write(
        tmp_path,
        "child",
        "name: child\nextends: base\npackages: [jq, git]\nsetup: echo child\n"
        "machine:\n  volumes: [/var/lib/x]\n",
    )
    return tmp_path


def test_digest_is_stable(recipes: Path) -> None:
    first = resolve("base", recipes).digest
    assert resolve("base", recipes).digest == first
    assert len(first) == 16 and int(first, 16) >= 0
    # Formatting that does not change the content does not change the digest.
    write(
        recipes, "base", "# a comment\nname: base\npackages:\n  - curl\n  - jq\nsetup: echo base\n"
    )
    assert resolve("base", recipes).digest == first


def test_digest_changes_with_packages(recipes: Path) -> None:
    before = resolve("base", recipes).digest
    child_before = resolve("child", recipes).digest
    write(recipes, "base", "name: base\npackages: [curl, jq, tree]\nsetup: echo base\n")
    assert resolve("base", recipes).digest != before
    # A child is rebuilt when what it extends changes.
    assert resolve("child", recipes).digest != child_before


def test_digest_changes_with_setup(recipes: Path) -> None:
    before = resolve("base", recipes).digest
    write(recipes, "base", "name: base\npackages: [curl, jq]\nsetup: echo other\n")
    assert resolve("base", recipes).digest != before


def test_extends_folds_packages_and_setup(recipes: Path) -> None:
    child = resolve("child", recipes)
    assert child.name == "child"
    assert child.packages == ["curl", "jq", "git"]
    assert child.setup_scripts == ["echo base", "echo child"]
    assert child.machine.volumes == ["/var/lib/x"]
    assert child.suite == "bookworm"


def test_unknown_recipe_is_not_found(recipes: Path) -> None:
    with pytest.raises(NotFound, match=r"no image recipe 'nosuch' \(known: base, child\)"):
        resolve("nosuch", recipes)
    write(recipes, "orphan", "name: orphan\nextends: missing\n")
    with pytest.raises(NotFound, match="missing"):
        resolve("orphan", recipes)


def test_extends_cycle(recipes: Path) -> None:
    write(recipes, "a", "name: a\nextends: b\n")
    write(recipes, "b", "name: b\nextends: a\n")
    with pytest.raises(ManifestError, match="cycle"):
        resolve("a", recipes)


def test_recipe_name_must_match_file(recipes: Path) -> None:
    write(recipes, "wrong", "name: right\n")
    with pytest.raises(ManifestError, match="must be 'wrong'"):
        load_recipe("wrong", recipes)


def test_bad_recipe_field_names_the_line(recipes: Path) -> None:
    write(recipes, "bad", "name: bad\npackages: [a]\nflavour: spicy\n")
    with pytest.raises(ManifestError) as caught:
        load_recipe("bad", recipes)
    assert caught.value.problems[0].startswith(f"{recipes / 'bad.yaml'}:3: flavour: ")


def test_builtin_recipes_resolve() -> None:
    assert {"linux", "docker"} <= set(recipe_names(RECIPES_DIR))
    linux, docker = resolve("linux"), resolve("docker")
    assert set(linux.packages) < set(docker.packages)
    assert "docker.io" in docker.packages
    assert docker.setup_scripts[0] == linux.setup_scripts[0]
    assert "/var/lib/docker" in docker.machine.volumes
    assert linux.digest != docker.digest


def test_suite_and_mirror_come_from_the_nearest_recipe_that_says(recipes: Path) -> None:
    write(recipes, "newer", "name: newer\nextends: child\nsuite: trixie\n")
    write(recipes, "newest", "name: newest\nextends: newer\npackages: [vim]\n")
    write(
        recipes,
        "other",
        "name: other\nextends: base\nsuite: noble\nmirror:\n"
        "  url: http://archive.example/ubuntu\n  keyring: /nonexistent/keyring.gpg\n",
    )
    assert resolve("base", recipes).suite == "bookworm"
    assert resolve("newest", recipes).suite == "trixie"
    assert resolve("newest", recipes).packages == ["curl", "jq", "git", "vim"]
    other = resolve("other", recipes)
    assert (other.suite, other.mirror and other.mirror.url) == (
        "noble",
        "http://archive.example/ubuntu",
    )
    assert other.mirror is not None and other.mirror.components == ["main"]


def test_a_recipe_from_another_archive_needs_its_keyring(tmp_path: Path, recipes: Path) -> None:
    write(
        recipes,
        "other",
        "name: other\nsuite: noble\nmirror:\n"
        "  url: http://archive.example/ubuntu\n  keyring: /nonexistent/keyring.gpg\n",
    )
    with pytest.raises(ImageBuildFailed, match=r"needs the keyring /nonexistent/keyring.gpg"):
        build_image(tmp_path / "images", "other", recipes_dir=recipes)
    assert not (tmp_path / "images" / "other").exists()


def test_the_catalog_recipes_resolve() -> None:
    assert resolve("linux").mirror is None and resolve("debian-trixie").suite == "trixie"
    assert resolve("dev-rust").suite == "trixie" and "cargo" in resolve("dev-rust").packages
    assert resolve("ubuntu-noble").mirror is not None
    assert "/var/lib/containers" in resolve("podman").machine.volumes
