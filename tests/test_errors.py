"""The error family's base class."""

from __future__ import annotations

import pickle

import pytest

from scalinglab.errors import ScalingLabError


def test_message_and_field_are_kept() -> None:
    error = ScalingLabError("budget must be positive, got -1", field="budget")
    assert str(error) == "budget must be positive, got -1"
    assert error.field == "budget"


def test_field_defaults_to_none_and_is_keyword_only() -> None:
    assert ScalingLabError("no field").field is None
    with pytest.raises(TypeError):
        ScalingLabError("message", "budget")  # type: ignore[misc]


def test_it_is_a_value_error_so_older_callers_still_catch_it() -> None:
    with pytest.raises(ValueError, match="bad"):
        raise ScalingLabError("bad", field="x")


def test_a_subclass_carries_its_field() -> None:
    class ChildError(ScalingLabError):
        pass

    with pytest.raises(ScalingLabError) as caught:
        raise ChildError("loss column missing", field="loss")
    assert caught.value.field == "loss"


def test_it_survives_pickling_with_its_field() -> None:
    # Errors cross process boundaries in the sweep executors.
    error = pickle.loads(pickle.dumps(ScalingLabError("bad key", field="law")))
    assert (str(error), error.field) == ("bad key", "law")


def test_the_console_script_reports_an_unmapped_error_in_one_line(monkeypatch, capsys):
    import scalinglab.cli as cli

    def command(**_: object) -> None:
        raise ScalingLabError("spec [train]: bad key", field="train.lr")

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: spec [train]: bad key"  # escaped: no markup swallowed
