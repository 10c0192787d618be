"""Documents and the character tokenizer.

A data set is a list of documents (names), one per line. The vocabulary is the sorted set
of characters in the documents plus one BOS token, whose id is the last: it marks both
the start and the end of a document, ``[BOS] + name + [BOS]``.

Where the documents come from, in order (``find_dataset``): the file given; else
``names.txt`` in the working directory; else the census first names shipped by the
``names`` package on PyPI (MIT licence), lower-cased, which works offline.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from microgpt.errors import MicrogptError

BOS_NAME = "BOS"  # how the BOS token is written on a command line and in views
DEFAULT_DATA_FILE = "names.txt"


@dataclass(frozen=True)
class Tokenizer:
    chars: str  # the vocabulary's characters, sorted; BOS is id len(chars)

    @classmethod
    def from_documents(cls, docs: list[str]) -> Tokenizer:
        return cls("".join(sorted(set("".join(docs)))))

    @property
    def bos(self) -> int:
        return len(self.chars)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def token_id(self, token: str) -> int:
        """One token as a user writes it: a character of the vocabulary, or BOS."""
        if token.upper() == BOS_NAME:
            return self.bos
        index = self.chars.find(token) if len(token) == 1 else -1
        if index < 0:
            raise MicrogptError(f"token {token!r} is not in the vocabulary: use one of {self.chars!r} or {BOS_NAME}")
        return index

    def encode(self, text: str) -> list[int]:
        """Characters to ids; an unknown character names itself and the vocabulary."""
        unknown = sorted(set(text) - set(self.chars))
        if unknown:
            raise MicrogptError(
                f"{''.join(unknown)!r} in {text!r} is not in the vocabulary {self.chars!r}: "
                "use only those characters, or train on data that has them"
            )
        return [self.chars.index(ch) for ch in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.token_name(i) for i in ids)

    def token_name(self, token_id: int) -> str:
        return BOS_NAME if token_id == self.bos else self.chars[token_id]

    def document_tokens(self, doc: str) -> list[int]:
        return [self.bos, *self.encode(doc), self.bos]


@dataclass(frozen=True)
class Dataset:
    docs: list[str]
    source: str  # what a user is told: a path, or the embedded default's name

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_documents(self.docs)


def parse_documents(text: str, source: str) -> list[str]:
    """One document per line, surrounding whitespace stripped, blank lines dropped."""
    docs = [doc for doc in map(str.strip, text.splitlines()) if doc]
    if not docs:
        raise MicrogptError(f"{source} has no documents: give a file with one name per line")
    return docs


def load_documents(path: str | Path) -> Dataset:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise MicrogptError(f"data file {path} does not exist: give a file with one name per line") from None
    except IsADirectoryError:
        raise MicrogptError(f"data file {path} is a directory: give a file with one name per line") from None
    except PermissionError:
        raise MicrogptError(f"data file {path} cannot be read (permission denied)") from None
    except OSError as e:  # e.g. a name too long for the file system
        raise MicrogptError(f"data file {path} cannot be read ({e.strerror}): give the path of a text file") from None
    except UnicodeDecodeError as e:
        raise MicrogptError(f"data file {path} is not UTF-8 (byte {e.start}): save it as UTF-8") from None
    return Dataset(parse_documents(text, str(path)), str(path))


EMBEDDED_SOURCE = "the embedded census first names (PyPI package 'names', MIT licence)"


def embedded_documents() -> Dataset:
    """US census first names from the ``names`` package, lower-cased, each once, in its order."""
    package = importlib.resources.files("names")
    seen: dict[str, None] = {}
    for filename in ("dist.female.first", "dist.male.first"):
        for line in package.joinpath(filename).read_text(encoding="ascii").splitlines():
            if line.strip():
                seen.setdefault(line.split()[0].lower(), None)
    return Dataset(list(seen), EMBEDDED_SOURCE)


def find_dataset(data: str | Path | None = None, cwd: str | Path = ".") -> Dataset:
    """The file given; else names.txt in ``cwd``; else the embedded default."""
    if data is not None:
        return load_documents(data)
    local = Path(cwd) / DEFAULT_DATA_FILE
    if local.is_file():
        return load_documents(local)
    return embedded_documents()
