"""The module-wide server: the demo clip replayed in a loop through a real `edge-xemo serve`."""

from __future__ import annotations

import pytest

from serving import replay_args, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo clip replayed in a loop, with explanations, at most 4 clients."""
    tmp = tmp_path_factory.mktemp("serve")
    s = start_server(tmp, *replay_args("--max-clients", "4"))
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()
