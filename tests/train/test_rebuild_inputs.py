"""A stage whose input is missing stops with a message naming the stage that should have made it."""

from __future__ import annotations

import pytest

from train import projector_data


def test_projector_data_names_the_stage_that_should_have_made_a_missing_bridge(monkeypatch):
    projector_data.require_bridges()  # the shipped bridges are present
    monkeypatch.setattr(projector_data, "BRIDGES", {"vecb_int8_gone": "export.vecb"})
    with pytest.raises(SystemExit, match=r"export\.vecb should have made it") as e:
        projector_data.require_bridges()
    assert "vecb_int8_gone" in str(e.value)
