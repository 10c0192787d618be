"""Documents, the tokenizer and where the data comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from microgpt.data import EMBEDDED_SOURCE, Tokenizer, embedded_documents, find_dataset, parse_documents
from microgpt.errors import MicrogptError
from microgpt.graph import resolve_token

TOKENIZER = Tokenizer.from_documents(["emma", "ava", "bob"])


def test_the_vocabulary_is_the_sorted_characters_then_bos() -> None:
    assert TOKENIZER.chars == "abemov"
    assert (TOKENIZER.bos, TOKENIZER.vocab_size) == (6, 7)
    assert TOKENIZER.document_tokens("ava") == [6, 0, 5, 0, 6]
    assert TOKENIZER.decode([6, 1, 2]) == "BOSbe"
    assert TOKENIZER.token_id("BOS") == TOKENIZER.token_id("bos") == 6
    assert TOKENIZER.token_id("m") == 3


@pytest.mark.parametrize("bad", ["z", "em", ""])
def test_a_token_outside_the_vocabulary_names_the_choices(bad: str) -> None:
    with pytest.raises(MicrogptError, match="not in the vocabulary: use one of 'abemov' or BOS"):
        TOKENIZER.token_id(bad)


def test_unknown_characters_are_named() -> None:
    with pytest.raises(MicrogptError, match=r"'xz' in 'maxz' is not in the vocabulary"):
        TOKENIZER.encode("maxz")


def test_documents_are_stripped_lines_without_blanks() -> None:
    assert parse_documents("  emma \n\n\tava\n  \nbob", "x") == ["emma", "ava", "bob"]
    with pytest.raises(MicrogptError, match="x has no documents"):
        parse_documents("\n \n", "x")


def test_the_data_set_is_the_file_given_else_names_txt_here_else_the_embedded_one(tmp_path: Path) -> None:
    given = tmp_path / "given.txt"
    given.write_text("ava\n")
    assert find_dataset(given, cwd=tmp_path).docs == ["ava"]
    assert find_dataset(None, cwd=tmp_path).source == EMBEDDED_SOURCE
    (tmp_path / "names.txt").write_text("bob\n")
    local = find_dataset(None, cwd=tmp_path)
    assert local.docs == ["bob"] and local.source.endswith("names.txt")


def test_the_embedded_names_are_lower_case_letters_each_once() -> None:
    data = embedded_documents()
    assert len(data.docs) == len(set(data.docs)) > 5000
    assert data.docs[:3] == ["mary", "patricia", "linda"]
    assert data.tokenizer.chars == "abcdefghijklmnopqrstuvwxyz"


def test_token_defaults_come_from_the_word() -> None:
    tok = Tokenizer("aem")
    spec = resolve_token(tok, 16)
    assert (spec.context, spec.token, spec.target, spec.word) == ((), tok.bos, 1, "emma")
    spec = resolve_token(tok, 16, pos=3, token="a", target="BOS")
    assert spec.context == (tok.bos, 1, 2) and spec.pos == 3
    assert (spec.token, spec.target) == (0, tok.bos)
    assert resolve_token(tok, 16, pos=4).target == tok.bos  # 'a' is followed by the closing BOS
    with pytest.raises(MicrogptError, match="past the end of 'emma'"):
        resolve_token(tok, 16, pos=5)
    with pytest.raises(MicrogptError, match="outside the context: use 0 to 3"):
        resolve_token(tok, 4, pos=4)
