"""The editor tab's API: a machine's files over SFTP (services/files.py).

    GET    /api/playgrounds/{id}/machines/{m}/files?path=DIR         list a directory
    GET    /api/playgrounds/{id}/machines/{m}/files/content?path=F   open a text file
    PUT    /api/playgrounds/{id}/machines/{m}/files/content          save {path, content}
    POST   /api/playgrounds/{id}/machines/{m}/files                  create {path, kind}
    POST   /api/playgrounds/{id}/machines/{m}/files/rename           {path, to}
    DELETE /api/playgrounds/{id}/machines/{m}/files?path=P           a file or empty dir

Every call takes an optional `user` (query parameter): the machine user it acts as, root
(the terminal's) by default. The machine's permissions apply: 403 when that user may not.
Someone else's playground is a 404, as everywhere; a stopped one a 409.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from labyard.api.deps import LabyardDep, UserDep
from labyard.services.files import MAX_EDIT_BYTES, MAX_PATH

router = APIRouter(prefix="/api/playgrounds/{playground_id}/machines/{machine}", tags=["files"])

# Optional in the schema only so that a stranger's request is a 404 like every other one,
# whatever it lacks: the service checks ownership first, then says that `path` is missing.
PathQuery = Annotated[
    str | None, Query(max_length=MAX_PATH, description="A path in the machine (required).")
]
AsUser = Annotated[
    str | None,
    Query(alias="user", max_length=32, description="The machine user to act as (default root)."),
]


class SaveRequest(BaseModel):
    path: str = Field(max_length=MAX_PATH)
    content: str = Field(max_length=MAX_EDIT_BYTES, description="UTF-8 text.")


class CreateRequest(BaseModel):
    path: str = Field(max_length=MAX_PATH)
    kind: Literal["file", "directory"] = "file"


class RenameRequest(BaseModel):
    path: str = Field(max_length=MAX_PATH)
    to: str = Field(max_length=MAX_PATH)


@router.get("/files")
async def list_files(
    playground_id: str,
    machine: str,
    labyard: LabyardDep,
    user: UserDep,
    path: Annotated[str | None, Query(max_length=MAX_PATH)] = None,
    as_user: AsUser = None,
) -> dict[str, Any]:
    """A directory's entries (name, kind, size, mode, mtime); the user's home by default."""
    return await labyard.files.listing(playground_id, machine, user.owner, path, as_user)


@router.get("/files/content")
async def read_file(
    playground_id: str,
    machine: str,
    labyard: LabyardDep,
    user: UserDep,
    path: PathQuery = None,
    as_user: AsUser = None,
) -> dict[str, Any]:
    """A text file (422 when it is binary or over the size limit)."""
    return await labyard.files.read(playground_id, machine, user.owner, path, as_user)


@router.put("/files/content")
async def save_file(
    playground_id: str,
    machine: str,
    body: SaveRequest,
    labyard: LabyardDep,
    user: UserDep,
    as_user: AsUser = None,
) -> dict[str, Any]:
    files = labyard.files
    return await files.write(playground_id, machine, user.owner, body.path, body.content, as_user)


@router.post("/files", status_code=201)
async def create_file(
    playground_id: str,
    machine: str,
    body: CreateRequest,
    labyard: LabyardDep,
    user: UserDep,
    as_user: AsUser = None,
) -> dict[str, Any]:
    """A new empty file or directory (409 if the path exists)."""
    directory = body.kind == "directory"
    return await labyard.files.create(
        playground_id, machine, user.owner, body.path, directory, as_user
    )


@router.post("/files/rename")
async def rename_file(
    playground_id: str,
    machine: str,
    body: RenameRequest,
    labyard: LabyardDep,
    user: UserDep,
    as_user: AsUser = None,
) -> dict[str, Any]:
    """Move a file or directory (409 if `to` exists: nothing is overwritten)."""
    return await labyard.files.rename(
        playground_id, machine, user.owner, body.path, body.to, as_user
    )


@router.delete("/files", status_code=204)
async def delete_file(
    playground_id: str,
    machine: str,
    labyard: LabyardDep,
    user: UserDep,
    path: PathQuery = None,
    as_user: AsUser = None,
) -> Response:
    """Remove a file, symlink or empty directory (409 for a directory that is not empty)."""
    await labyard.files.delete(playground_id, machine, user.owner, path, as_user)
    return Response(status_code=204)
