"""Secret: printing shows ***; reveal() is the one way to the value."""

from __future__ import annotations

import logging
import pickle

import pytest

from ci_shark.secret import Secret

VALUE = "ghp_s3cr3tCANARYvalue"


def test_str_repr_format_and_fstrings_hide_the_value() -> None:
    secret = Secret(VALUE)
    shown = [
        str(secret),
        repr(secret),
        format(secret),
        format(secret, ">40"),
        f"{secret}",
        f"{secret!s}",
        f"{secret!r}",
        f"{secret:^30}",
        "%s" % secret,  # noqa: UP031
        "{}".format(secret),  # noqa: UP032
        str([secret]),
        str({"token": secret}),
        repr((secret,)),
    ]
    for text in shown:
        assert VALUE not in text
        assert "***" in text


def test_logging_hides_the_value(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("ci_shark.test").info("token is %s", Secret(VALUE))
    assert VALUE not in caplog.text
    assert "***" in caplog.text


def test_reveal_is_the_way_to_the_value() -> None:
    assert Secret(VALUE).reveal() == VALUE


def test_truthiness_length_and_equality() -> None:
    assert Secret(VALUE)
    assert not Secret("")
    assert len(Secret(VALUE)) == len(VALUE)
    assert Secret(VALUE) == Secret(VALUE)
    assert Secret(VALUE) != Secret(VALUE + "x")
    assert Secret(VALUE) != VALUE  # never equal to the bare string
    assert hash(Secret(VALUE)) == hash(Secret(VALUE))
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2


def test_only_strings_are_wrapped() -> None:
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Secret(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_cannot_be_pickled(protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(VALUE), protocol=protocol)


def test_cannot_be_pickled_inside_a_container() -> None:
    with pytest.raises(TypeError):
        pickle.dumps({"token": Secret(VALUE)})


def test_no_attribute_leads_to_the_value() -> None:
    secret = Secret(VALUE)
    assert not hasattr(secret, "__dict__")
    with pytest.raises(AttributeError):
        secret.value = "x"  # type: ignore[attr-defined]
