"""Yuan typed by people become exact fen; nothing else is accepted."""
import pytest

from handlers.errors import DomainError
from handlers.money import to_fen, yuan


@pytest.mark.parametrize("text,fen", [("10", 1000), ("10.5", 1050), ("0.01", 1), ("¥19.90", 1990),
                                      ("￥19.90", 1990), ("１０．５", 1050), (" 999999.99 ", 99999999)])
def test_yuan_to_fen(text, fen):
    assert to_fen(text) == fen


@pytest.mark.parametrize("text", ["", "abc", "1.234", "-1", "1e3", "1,000", "٣", "10.", ".5", "1 0"])
def test_anything_else_is_refused(text):
    with pytest.raises(DomainError):
        to_fen(text)


@pytest.mark.parametrize("fen,text", [(0, "0.00"), (1, "0.01"), (1990, "19.90"), (-2469, "-24.69")])
def test_fen_to_yuan(fen, text):
    assert yuan(fen) == text
