"""LTI roles (LIS vocabulary): who is a teacher in a course."""

from __future__ import annotations

TEACHER_ROLES = (
    "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor",
    "http://purl.imsglobal.org/vocab/lis/v2/membership#Administrator",
    "http://purl.imsglobal.org/vocab/lis/v2/membership#ContentDeveloper",
    "http://purl.imsglobal.org/vocab/lis/v2/membership#Mentor",
)
TEACHER_PREFIXES = ("http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#",)
"""Sub-roles of Instructor (TeachingAssistant, Grader, ...)."""
SHORT_TEACHER_ROLES = {"Instructor", "Administrator", "ContentDeveloper", "Mentor"}
"""Simple names, which LTI 1.3 allows for context roles (and NRPS often sends)."""


def is_teacher(roles: object) -> bool:
    """Whether the roles (an id_token's roles claim, an NRPS member's) include a course
    teacher's. Institution roles (a university administrator) do not count: they say
    nothing about this course."""
    if not isinstance(roles, list):
        return False
    for role in roles:
        if not isinstance(role, str):
            continue
        if role in TEACHER_ROLES or role in SHORT_TEACHER_ROLES:
            return True
        if role.startswith(TEACHER_PREFIXES):
            return True
    return False
