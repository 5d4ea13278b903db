"""One table of reason phrases (RFC 9110 section 15) for every status line fastgw writes."""

from __future__ import annotations

import pytest

from fastgw._core import (
    ERROR_TABLE,
    REDIRECT_STATUSES,
    STATUS_PHRASES,
    RespondStep,
    status_line_for,
)

# The phrases RFC 9110 changed from RFC 7231/2616 (Python's http.HTTPStatus has the old ones).
RENAMED = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


@pytest.mark.parametrize("status", sorted(STATUS_PHRASES))
def test_errors_and_policy_answers_write_the_same_line(status: int) -> None:
    expected = b"HTTP/1.1 %d %s\r\n" % (status, STATUS_PHRASES[status].encode("ascii"))
    assert status_line_for(status) == expected
    if status >= 200:
        assert RespondStep(status, (), b"").head == expected


@pytest.mark.parametrize("status", sorted(RENAMED))
def test_rfc9110_phrases(status: int) -> None:
    assert STATUS_PHRASES[status] == RENAMED[status]


def test_every_status_the_gateway_emits_has_a_phrase() -> None:
    emitted = {status for status, _, _ in ERROR_TABLE.values()}
    emitted |= set(REDIRECT_STATUSES) | {100, 101}
    assert emitted <= set(STATUS_PHRASES)


def test_status_without_a_phrase_keeps_the_separator() -> None:
    # RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
    assert status_line_for(299) == RespondStep(299, (), b"").head == b"HTTP/1.1 299 \r\n"
