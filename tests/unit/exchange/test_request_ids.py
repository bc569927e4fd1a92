"""Request ids the hub makes up for calls that bring none (`exchange.logs.new_request_id`)."""

from __future__ import annotations

import os
import re

from exchange.logs import REQUEST_ID_PATTERN, new_request_id


def test_request_ids_are_32_hex_digits_and_distinct() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert all(REQUEST_ID_PATTERN.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_does_not_repeat_its_parents_ids() -> None:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: write its next id and leave at once
        os.write(writer, new_request_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    childs = os.read(reader, 64).decode()
    os.close(reader)
    assert re.fullmatch(r"[0-9a-f]{32}", childs)
    assert childs != new_request_id()
