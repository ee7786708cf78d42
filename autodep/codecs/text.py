"""Text -> token ids and attention mask, with a `tokenizers` JSON file."""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer

from autodep.codecs.base import Decoded, Payload
from autodep.config import ModelConfig
from autodep.errors import InvalidInput, UnsupportedMediaType

MAX_CHARS = 100_000  # longer texts are refused rather than tokenized and then truncated


class TextDecoder:
    def __init__(self, model: ModelConfig) -> None:
        assert model.tokenizer is not None  # the config requires it for text models
        self.length = model.max_length
        self.tokenizer = Tokenizer.from_file(str(model.tokenizer))
        pad_id = self.tokenizer.token_to_id("<pad>")
        self.tokenizer.enable_truncation(self.length)
        self.tokenizer.enable_padding(
            length=self.length, pad_id=1 if pad_id is None else pad_id, pad_token="<pad>"
        )

    def check(self, payload: Payload) -> None:
        if not isinstance(payload.data, str):
            raise UnsupportedMediaType(
                'this model takes text; send text/plain or a JSON body {"text": "..."}'
            )

    def decode(self, payload: Payload) -> Decoded:
        self.check(payload)
        assert isinstance(payload.data, str)
        text = payload.data
        if not text.strip():
            raise InvalidInput("the text is empty")
        if len(text) > MAX_CHARS:
            raise InvalidInput(f"text of {len(text)} characters is too long (at most {MAX_CHARS})")
        encoding = self.tokenizer.encode(text)
        ids = np.asarray(encoding.ids, dtype=np.int64)
        mask = np.asarray(encoding.attention_mask, dtype=np.int64)
        return Decoded([ids, mask], {"tokens": int(mask.sum())})

    def example(self) -> tuple[tuple[tuple[int, ...], str], ...]:
        return (((self.length,), "int64"), ((self.length,), "int64"))
