"""The editor tab's files API against a real server and a real `linux` playground: SFTP in
the machine, as root or as another of its users, with the machine's permissions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Account, Server


@pytest.fixture(scope="module")
def owner(server: Server) -> Iterator[tuple[Account, str]]:
    account = server.signup()
    playground = account.start("linux")
    yield account, f"/api/playgrounds/{playground['id']}/machines/linux/files"
    account.destroy_all()


def exec_in(account: Account, files: str, command: str) -> dict[str, Any]:
    playground = files.split("/machines/")[0]
    response = account.api("POST", f"{playground}/exec", json={"command": command}, timeout=60)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_open_save_and_find_the_change_in_the_machine(owner: tuple[Account, str]) -> None:
    account, files = owner
    listing = account.api("GET", files, params={"path": "/etc"})
    assert listing.status_code == 200, listing.text
    assert "motd" in {e["name"] for e in listing.json()["entries"]}
    opened = account.api("GET", f"{files}/content", params={"path": "/etc/motd"})
    assert opened.status_code == 200, opened.text
    content = opened.json()["content"] + "edited by the files API ✓\n"
    saved = account.api("PUT", f"{files}/content", json={"path": "/etc/motd", "content": content})
    assert saved.status_code == 200, saved.text
    assert exec_in(account, files, "cat /etc/motd")["stdout"] == content
    # An existing file keeps its owner and mode.
    assert exec_in(account, files, "stat -c '%U %a' /etc/motd")["stdout"].strip() == "root 644"


def test_home_is_listed_by_default(owner: tuple[Account, str]) -> None:
    account, files = owner
    listing = account.api("GET", files)
    assert listing.status_code == 200, listing.text
    assert listing.json()["path"] == "/root"
    assert listing.json()["user"] == "root"


def test_create_rename_delete(owner: tuple[Account, str]) -> None:
    account, files = owner
    made = account.api("POST", files, json={"path": "/tmp/notes", "kind": "directory"})
    assert made.status_code == 201, made.text
    made = account.api("POST", files, json={"path": "/tmp/notes/a.txt"})
    assert made.status_code == 201, made.text
    again = account.api("POST", files, json={"path": "/tmp/notes/a.txt"})
    assert again.status_code == 409, again.text
    account.api("POST", files, json={"path": "/tmp/notes/b.txt"})
    onto = account.api(
        "POST", f"{files}/rename", json={"path": "/tmp/notes/a.txt", "to": "/tmp/notes/b.txt"}
    )
    assert onto.status_code == 409, onto.text  # nothing is overwritten
    moved = account.api(
        "POST", f"{files}/rename", json={"path": "/tmp/notes/a.txt", "to": "/tmp/notes/c.txt"}
    )
    assert moved.status_code == 200, moved.text
    assert exec_in(account, files, "ls /tmp/notes")["stdout"].split() == ["b.txt", "c.txt"]
    full = account.api("DELETE", files, params={"path": "/tmp/notes"})
    assert full.status_code == 409, full.text  # not empty
    for name in ("b.txt", "c.txt"):
        gone = account.api("DELETE", files, params={"path": f"/tmp/notes/{name}"})
        assert gone.status_code == 204, gone.text
    assert account.api("DELETE", files, params={"path": "/tmp/notes"}).status_code == 204
    missing = account.api("GET", f"{files}/content", params={"path": "/tmp/notes/c.txt"})
    assert missing.status_code == 404, missing.text
    assert "no such file" in missing.json()["error"]["message"]


def test_binary_big_and_directories_are_refused_with_a_message(owner: tuple[Account, str]) -> None:
    account, files = owner
    binary = account.api("GET", f"{files}/content", params={"path": "/usr/bin/ls"})
    assert binary.status_code == 422, binary.text
    assert binary.json()["error"]["reason"] == "binary"
    exec_in(account, files, "head -c 3000000 /dev/zero | tr '\\0' a > /tmp/big.txt")
    big = account.api("GET", f"{files}/content", params={"path": "/tmp/big.txt"})
    assert big.status_code == 422, big.text
    assert "too big" in big.json()["error"]["message"]
    folder = account.api("GET", f"{files}/content", params={"path": "/etc"})
    assert folder.status_code == 422, folder.text
    assert "is a directory" in folder.json()["error"]["message"]


def test_another_user_has_that_users_permissions(owner: tuple[Account, str]) -> None:
    account, files = owner
    as_nobody = {"user": "nobody"}
    refused = account.api(
        "PUT",
        f"{files}/content",
        params=as_nobody,
        json={"path": "/etc/motd", "content": "not allowed\n"},
    )
    assert refused.status_code == 403, refused.text
    assert "permission denied" in refused.json()["error"]["message"]
    shadow = account.api("GET", f"{files}/content", params={"path": "/etc/shadow", **as_nobody})
    assert shadow.status_code == 403, shadow.text
    readable = account.api("GET", f"{files}/content", params={"path": "/etc/hostname", **as_nobody})
    assert readable.status_code == 200, readable.text
    written = account.api(
        "PUT", f"{files}/content", params=as_nobody, json={"path": "/tmp/mine", "content": "x"}
    )
    assert written.status_code == 200, written.text
    assert exec_in(account, files, "stat -c %U /tmp/mine")["stdout"].strip() == "nobody"
    unknown = account.api("GET", files, params={"user": "no-such-user"})
    assert unknown.status_code == 404, unknown.text
    assert "no user" in unknown.json()["error"]["message"]


def test_symlinks_and_dotdot_resolve_inside_the_machine(owner: tuple[Account, str]) -> None:
    """SFTP runs in the machine: `..` past / is /, and a link to /etc/hostname is the
    machine's file, not the host's."""
    account, files = owner
    exec_in(account, files, "ln -sf /etc/hostname /tmp/link")
    through = account.api("GET", f"{files}/content", params={"path": "/tmp/link"})
    hostname = exec_in(account, files, "cat /etc/hostname")["stdout"]
    assert through.status_code == 200, through.text
    assert through.json()["content"] == hostname
    up = account.api("GET", f"{files}/content", params={"path": "/../../../../etc/hostname"})
    assert up.json()["content"] == hostname
    link = next(
        e
        for e in account.api("GET", files, params={"path": "/tmp"}).json()["entries"]
        if e["name"] == "link"
    )
    assert (link["kind"], link["target"]) == ("symlink", "/etc/hostname")


def test_a_stranger_gets_404(server: Server, owner: tuple[Account, str]) -> None:
    _, files = owner
    stranger = server.signup()
    for method, path in (("GET", files), ("GET", f"{files}/content")):
        response = stranger.api(method, path, params={"path": "/etc/motd"})
        assert response.status_code == 404, response.text
