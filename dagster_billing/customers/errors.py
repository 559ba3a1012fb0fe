"""Errors of the write path; each message starts with the field it is about."""

from __future__ import annotations


class CustomerError(ValueError):
    """Input the write path refuses: `field: what is wrong`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class NotFoundError(LookupError):
    """No such organization or subscription (or not one the caller may see)."""

    def __init__(self, entity: str, key: str) -> None:
        super().__init__(f"{entity} {key!r} not found")
        self.entity = entity
        self.key = key
