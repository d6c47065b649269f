"""The one error of the study domain: a request refused, with the HTTP status to answer."""
from __future__ import annotations


class StudyError(ValueError):
    """400 bad input, 404 unknown study/trial, 409 not in a state that allows it (closed, answered)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
