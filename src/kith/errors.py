"""Domain errors: raised by services; the edge turns them into 422s, form messages or 4xx."""

from __future__ import annotations


class KithError(Exception):
    """A request Kith refuses for a reason the user can act on."""

    status = 422
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field


class ValidationFailed(KithError):
    """Input breaks a rule (the field names which input)."""


class NotFound(KithError):
    """The thing does not exist, or the viewer may not know it does (never tell which)."""

    status = 404

    def __init__(self, message: str = "Not found") -> None:
        super().__init__(message)


class Forbidden(KithError):
    """The viewer may see the thing but not do this to it."""

    status = 403


class RateLimited(KithError):
    """Too many attempts; try again later."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
