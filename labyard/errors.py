"""Every error labyard raises on purpose.

    LabyardError                 message for the user, reason label, log detail
    ├── InvalidInput             bad manifest, recipe or argument (CLI exit 2, HTTP 422)
    │   ├── ManifestError        names the file, line and field
    │   ├── SettingsFileError    an operator file (plans.yaml) that does not validate
    │   └── PromoRefused         a promo code this checkout may not use (HTTP 422, why in reason)
    ├── BadWebhook               a payment webhook with a bad signature, stale or unparsable (400)
    ├── NotFound                 no such playground, machine or image (exit 3, HTTP 404)
    ├── Conflict                 wrong state for the request, e.g. exec on a stopped playground
    ├── LimitExceeded            over a plan or host limit (exit 4, HTTP 429)
    │   └── TooManyAttempts      too many failed sign-ins
    ├── Forbidden                signed in, but the role does not allow it (exit 4, HTTP 403)
    │   └── CsrfFailed           a cookie-authenticated change without the CSRF token
    ├── Unauthenticated          not signed in, or a revoked token (exit 6, HTTP 401)
    ├── RuntimeFailure           the sandbox world failed: runc, mounts, network (exit 5, HTTP 503)
    │   └── ImageBuildFailed
    ├── AccessFailure            SSH into a machine failed (exit 5, HTTP 502)
    │   └── CommandTimeout
    └── ProviderFailure          the payment provider's API failed or refused (exit 5, HTTP 502)

Subprocess, pyroute2 and asyncssh exceptions never escape `runtime/` or `access/`, nor the
`stripe` package's beyond `services/billing/`: they are translated here, with the original
chained as the cause.
"""

from __future__ import annotations


class LabyardError(Exception):
    """Base error: `message` is safe to show a user, `detail` is for the log."""

    reason = "error"
    exit_code = 1
    http_status = 500

    def __init__(self, message: str, *, detail: str = "", reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class InvalidInput(LabyardError):
    reason = "invalid_input"
    exit_code = 2
    http_status = 422


class ManifestError(InvalidInput):
    """A manifest or recipe that does not validate; `problems` lists every one found."""

    reason = "invalid_manifest"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class SettingsFileError(InvalidInput):
    """An operator's settings file (plans.yaml) that does not validate: the instance does
    not start. `problems` are `file:line: field: message`, like a manifest's."""

    reason = "invalid_settings_file"

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid {what}:\n" + "\n".join(f"  {p}" for p in problems))


class PromoRefused(InvalidInput):
    """A promo code that does not apply: unknown, disabled, expired, used up, not for this
    plan, not a first purchase, used by this account already; `reason` says which
    (`promo_unknown`, `promo_expired`, ...)."""

    reason = "promo_refused"


class BadWebhook(LabyardError):
    """A webhook refused before anything is stored: the provider retries it, and an
    attacker learns nothing but the 400."""

    reason = "bad_webhook"
    exit_code = 2
    http_status = 400


class NotFound(LabyardError):
    reason = "not_found"
    exit_code = 3
    http_status = 404


class Conflict(LabyardError):
    reason = "conflict"
    exit_code = 4
    http_status = 409


class LimitExceeded(LabyardError):
    reason = "limit_exceeded"
    exit_code = 4
    http_status = 429


class Forbidden(LabyardError):
    reason = "forbidden"
    exit_code = 4
    http_status = 403


class TooManyAttempts(LimitExceeded):
    reason = "too_many_attempts"


class CsrfFailed(Forbidden):
    reason = "csrf_failed"


class Unauthenticated(LabyardError):
    reason = "unauthenticated"
    exit_code = 6
    http_status = 401


class RuntimeFailure(LabyardError):
    reason = "runtime_failure"
    exit_code = 5
    http_status = 503


class ImageBuildFailed(RuntimeFailure):
    reason = "image_build_failed"


class AccessFailure(LabyardError):
    reason = "access_failure"
    exit_code = 5
    http_status = 502


class CommandTimeout(AccessFailure):
    reason = "command_timeout"


class ProviderFailure(LabyardError):
    reason = "provider_failure"
    exit_code = 5
    http_status = 502
