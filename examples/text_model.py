"""Build a tiny RoBERTa sentiment classifier for the model server, entirely offline.

Everything is made from scratch: a seeded generator of templated English sentences with a
sentiment label, a byte-level BPE tokenizer trained on them, and a small
``RobertaForSequenceClassification`` trained for a minute or two on CPU.  The model is exported
with ``torch.jit.trace`` so the server can run it with plain ``torch.jit.load`` (no transformers).

Usage::

    python -m examples.text_model --out DIR [--quick] [--force]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

T = TypeVar("T")

NAME = "roberta"
LABELS = ("negative", "positive")
MAX_LENGTH = 64
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0..4, as in RoBERTa
BOS_ID, PAD_ID, EOS_ID = 0, 1, 2
TRAIN_SEED = 1234
EVAL_SEED = 987654

# Sentences a user might type, used as a sanity check beyond the generator's own distribution.
HANDWRITTEN = (
    ("The soup was absolutely wonderful!", 1),
    ("I did not enjoy the film at all.", 0),
    ("This is the worst phone I have ever had.", 0),
    ("honestly the pizza was great", 1),
    ("The service was terrible and the staff were rude.", 0),
    ("Not bad at all!", 1),
    ("I loved this book.", 1),
    ("The hotel room wasn't clean.", 0),
    ("What a fantastic concert!", 1),
    ("I would never recommend this restaurant.", 0),
    ("THE MOVIE WAS SO BORING", 0),
    ("The coffee was not good.", 0),
)

# --------------------------------------------------------------------------------------------
# Sentence generator
# --------------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    """Word lists are space-separated strings so that they stay compact under the formatter."""
    return tuple(text.split())


POSITIVE_ADJECTIVES = _words(
    "good great wonderful excellent amazing fantastic delicious lovely brilliant superb pleasant"
    " enjoyable impressive outstanding nice perfect charming delightful fun beautiful clean"
    " friendly fresh awesome solid helpful tasty comfortable cozy fast"
)
NEGATIVE_ADJECTIVES = _words(
    "bad terrible awful horrible disappointing boring dull bland mediocre poor dreadful"
    " unpleasant annoying disgusting weak lousy painful rude slow dirty cold stale noisy"
    " overpriced useless predictable confusing broken expensive greasy"
)
SINGULAR_NOUNS = _words(
    "soup film movie book pizza service hotel room concert game phone laptop coffee meal show"
    " album trip restaurant app car story ending song product food class lecture camera beer"
    " salad place plot order experience price music acting battery view delivery"
)
PLURAL_NOUNS = _words("fries staff headphones shoes waiters seats noodles reviews")
NOUNS = SINGULAR_NOUNS + PLURAL_NOUNS
DETERMINERS = ("the", "the", "this", "that", "our", "my", "their")
# Sentiment-neutral words in front of nouns, so the model can't treat every adjective as a cue.
MODIFIERS = ("", "", "", "", "new ", "old ", "local ", "main ", "last ", "first ", "hotel ", "big ")
SUBJECTS = (
    *("I", "I", "we", "she", "he", "they", "everyone"),
    *("my wife", "my husband", "my friends", "my kids", "my parents", "the whole family"),
)
PRESENT_SUBJECTS = ("I", "I", "we", "they")  # the ones that take the base form
# "past:base" verb forms
POSITIVE_VERBS = _words("loved:love enjoyed:enjoy liked:like adored:adore appreciated:appreciate")
NEGATIVE_VERBS = _words(
    "hated:hate disliked:dislike despised:despise detested:detest regretted:regret"
)
INTENSIFIERS = (
    *("", "", "", "absolutely ", "really ", "very ", "truly ", "incredibly ", "extremely "),
    *("so ", "quite ", "totally ", "genuinely ", "pretty ", "super "),
)
EXCLAMATION_INTENSIFIERS = ("", "", "truly ", "really ", "absolutely ", "very ")
ADJECTIVE_NEGATIONS = ("not ", "not very ", "not really ", "never ", "hardly ", "not at all ")
VERB_NEGATIONS = ("did not", "didn't", "really didn't", "never", "did not really", "can't say")
PRESENT_NEGATIONS = ("don't", "do not", "really don't")
VERB_TAILS = ("", "", " a lot", " so much", " very much", " at all")
OPENERS = (
    *("I think", "I feel", "honestly,", "to be honest,", "in my opinion,", "overall,"),
    *("frankly,", "I have to say", "well,", "wow,"),
)
ENDINGS = (".", ".", ".", "!", "!", "!!!", "...", "", "", "?!")


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[rng.integers(len(options))]


def _adjective(rng: np.random.Generator, polarity: int) -> str:
    return _pick(rng, POSITIVE_ADJECTIVES if polarity > 0 else NEGATIVE_ADJECTIVES)


def _polarity(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def _noun_phrase(rng: np.random.Generator) -> tuple[str, bool]:
    noun = _pick(rng, NOUNS)
    determiner = _pick(rng, DETERMINERS)
    plural = noun in PLURAL_NOUNS
    if plural:
        determiner = {"this": "these", "that": "those"}.get(determiner, determiner)
    return f"{determiner} {_pick(rng, MODIFIERS)}{noun}", plural


def _copula(rng: np.random.Generator, plural: bool) -> str:
    return ("were" if plural else "was") if rng.random() < 0.7 else ("are" if plural else "is")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _adjectives(rng: np.random.Generator, polarity: int) -> str:
    """One adjective, or sometimes two that agree: 'friendly and helpful'."""
    if rng.random() < 0.15:
        return f"{_adjective(rng, polarity)} and {_adjective(rng, polarity)}"
    return _adjective(rng, polarity)


def _subject(rng: np.random.Generator) -> tuple[str, bool]:
    if rng.random() < 0.15:
        return _pick(rng, ("it", "this", "everything")), False
    return _noun_phrase(rng)


def _clause_adjective(rng: np.random.Generator) -> tuple[str, int]:
    """'the soup was absolutely wonderful' / 'the fries were not very fresh'."""
    polarity = _polarity(rng)
    subject, plural = _subject(rng)
    copula = _copula(rng, plural)
    if rng.random() < 0.35:
        negation = _pick(rng, ADJECTIVE_NEGATIONS)
        if negation == "not " and rng.random() < 0.4:
            copula, negation = copula + "n't", ""
        if negation == "not at all ":  # "not good at all" reads better than "not at all good"
            return f"{subject} {copula} not {_adjective(rng, polarity)} at all", -polarity
        return f"{subject} {copula} {negation}{_adjective(rng, polarity)}", -polarity
    return f"{subject} {copula} {_pick(rng, INTENSIFIERS)}{_adjectives(rng, polarity)}", polarity


def _clause_verb(rng: np.random.Generator) -> tuple[str, int]:
    """'I loved the movie so much' / 'we did not enjoy the film at all' / 'I love it'."""
    polarity = _polarity(rng)
    past, base = _pick(rng, POSITIVE_VERBS if polarity > 0 else NEGATIVE_VERBS).split(":")
    subject = _pick(rng, SUBJECTS)
    obj = "it" if rng.random() < 0.15 else _noun_phrase(rng)[0]
    tail = _pick(rng, VERB_TAILS)
    if rng.random() < 0.25:  # present tense
        subject = _pick(rng, PRESENT_SUBJECTS)
        if rng.random() < 0.4:
            return f"{subject} {_pick(rng, PRESENT_NEGATIONS)} {base} {obj}{tail}", -polarity
        return f"{subject} {base} {obj}{tail.replace(' at all', '')}", polarity
    if rng.random() < 0.4:
        negation = _pick(rng, VERB_NEGATIONS)
        if negation == "can't say":
            return f"I can't say I {base} {obj}{tail}", -polarity
        verb = past if negation == "never" else base
        return f"{subject} {negation} {verb} {obj}{tail}", -polarity
    adverb = "really " if rng.random() < 0.2 else ""
    return f"{subject} {adverb}{past} {obj}{tail.replace(' at all', '')}", polarity


def _sentence_exclamation(rng: np.random.Generator) -> tuple[str, int]:
    """'what a lovely salad'."""
    polarity = _polarity(rng)
    noun = _pick(rng, NOUNS)
    words = f"{_pick(rng, EXCLAMATION_INTENSIFIERS)}{_adjective(rng, polarity)} {noun}"
    article = "" if noun in PLURAL_NOUNS else f"{_article(words)} "
    return f"what {article}{words}", polarity


def _sentence_recommend(rng: np.random.Generator) -> tuple[str, int]:
    """'I would definitely recommend this hotel' / 'I would not recommend this app'."""
    noun = _pick(rng, SINGULAR_NOUNS)
    if rng.random() < 0.5:
        adverb = _pick(rng, ("definitely ", "certainly ", "happily ", "highly ", ""))
        return f"I would {adverb}recommend this {noun}", 1
    negation = _pick(rng, ("not", "never", "not really", "n't"))
    modal = "wouldn't" if negation == "n't" else f"would {negation}"
    return f"I {modal} recommend this {noun}", -1


def _sentence_superlative(rng: np.random.Generator) -> tuple[str, int]:
    """'this is the best pizza I have ever had'."""
    polarity = _polarity(rng)
    superlative = "best" if polarity > 0 else _pick(rng, ("worst", "worst", "most boring"))
    noun = _pick(rng, SINGULAR_NOUNS)
    verb = _pick(rng, ("had", "tried", "seen", "used", "bought", "experienced"))
    opening = _pick(rng, ("this is", "this was", "it was", "easily"))
    by_far = _pick(rng, ("", "by far "))
    return f"{opening} {by_far}the {superlative} {noun} I have ever {verb}", polarity


def _sentence_opinion(rng: np.random.Generator) -> tuple[str, int]:
    """'honestly, the coffee was not good'."""
    clause, polarity = _clause_adjective(rng) if rng.random() < 0.6 else _clause_verb(rng)
    return f"{_pick(rng, OPENERS)} {clause}", polarity


def _sentence_compound(rng: np.random.Generator) -> tuple[str, int]:
    """'the soup was cold, but the staff were friendly' (the clause after 'but' decides) or
    'the soup was cold and the staff were rude' (both clauses agree)."""
    contrast = rng.random() < 0.6
    while True:
        first, first_polarity = _clause_adjective(rng) if rng.random() < 0.5 else _clause_verb(rng)
        second, polarity = _clause_adjective(rng) if rng.random() < 0.5 else _clause_verb(rng)
        if (polarity != first_polarity) == contrast:
            return f"{first}, but {second}" if contrast else f"{first} and {second}", polarity


def _sentence_simple(rng: np.random.Generator) -> tuple[str, int]:
    return _clause_adjective(rng) if rng.random() < 0.55 else _clause_verb(rng)


def _sentence_fragment(rng: np.random.Generator) -> tuple[str, int]:
    """What people type in a hurry: 'not bad at all', 'terrible service', 'best pizza ever'."""
    polarity = _polarity(rng)
    kind = rng.integers(5)
    if kind == 0:
        return f"not {_adjective(rng, polarity)}{_pick(rng, ('', ' at all'))}", -polarity
    if kind == 1:
        return f"{_pick(rng, INTENSIFIERS)}{_adjectives(rng, polarity)}", polarity
    if kind == 2:
        first, second = (f"{_adjective(rng, polarity)} {_pick(rng, NOUNS)}" for _ in range(2))
        return (first if rng.random() < 0.6 else f"{first}, {second}"), polarity
    if kind == 3:
        superlative = "best" if polarity > 0 else "worst"
        place = _pick(rng, ("ever", "in town", "of the year", "I have had"))
        return f"{superlative} {_pick(rng, SINGULAR_NOUNS)} {place}", polarity
    if polarity > 0:
        return _pick(rng, ("highly recommend", "highly recommended", "would recommend")), 1
    return _pick(rng, ("would not recommend", "not recommended", "do not recommend")), -1


# (weight, template)
TEMPLATES: tuple[tuple[float, Callable[[np.random.Generator], tuple[str, int]]], ...] = (
    (0.40, _sentence_simple),
    (0.15, _sentence_opinion),
    (0.10, _sentence_compound),
    (0.10, _sentence_exclamation),
    (0.08, _sentence_recommend),
    (0.09, _sentence_superlative),
    (0.10, _sentence_fragment),
)
_TEMPLATE_WEIGHTS = np.array([weight for weight, _ in TEMPLATES]) / sum(w for w, _ in TEMPLATES)


def _surface(rng: np.random.Generator, text: str) -> str:
    """Vary case and final punctuation the way people type."""
    text = text + _pick(rng, ENDINGS)
    roll = rng.random()
    if roll < 0.12:
        return text.lower()
    if roll < 0.17:
        return text.upper()
    return text[0].upper() + text[1:]


def sentence_sample(rng: np.random.Generator) -> tuple[str, int]:
    """Return one generated sentence and its label index into ``LABELS``."""
    template = TEMPLATES[rng.choice(len(TEMPLATES), p=_TEMPLATE_WEIGHTS)][1]
    text, polarity = template(rng)
    return _surface(rng, text), int(polarity > 0)


def sentences(seed: int, n: int) -> tuple[list[str], list[int]]:
    """``n`` texts and their labels from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    texts, labels = zip(*(sentence_sample(rng) for _ in range(n)), strict=True)
    return list(texts), list(labels)


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int) -> Tokenizer:
    """Byte-level BPE with RoBERTa's special tokens and ``<s> ... </s>`` post-processing.

    It lowercases (like ``ByteLevelBPETokenizer(lowercase=True)``): byte-level pieces of "BORING"
    share nothing with "boring", and a model this small doesn't learn the link from the few
    shouted sentences it sees.  Truncation is enabled so an over-long text keeps its ``</s>``;
    padding is left to the server.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", EOS_ID), ("<s>", BOS_ID), trim_offsets=True, add_prefix_space=False
    )
    tokenizer.enable_truncation(max_length)
    assert [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == list(
        range(len(SPECIAL_TOKENS))
    )
    return tokenizer


def encode_batch(
    tokenizer: Tokenizer, texts: Sequence[str], max_length: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask as the server builds them: encode, truncate, pad with ``PAD_ID``.

    ``max_length=None`` pads only to the longest text in the batch (cheaper for training).
    """
    ids = [tokenizer.encode(text).ids for text in texts]
    if max_length is not None:
        ids = [row[:max_length] for row in ids]
    width = max_length or max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), PAD_ID, dtype=torch.int64)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.int64)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class LogitsOnly(torch.nn.Module):
    """Gives the traced graph the server's signature: ``(input_ids, attention_mask) -> logits``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]


class Recipe(NamedTuple):
    """How much data and training one kind of build gets."""

    sentences: int
    epochs: int


# Quick is the same model on less data: over 8 training seeds it scored 0.91-0.99 held-out (0.94
# and up with 5000 sentences, at 25% more time). A hidden-64 model was faster but less reliable:
# 0.86-0.99.
QUICK = Recipe(sentences=4000, epochs=3)
FULL = Recipe(sentences=24000, epochs=3)
LEARNING_RATE = 1e-3
VOCAB_SIZE = 1000  # an upper bound: the lowercased sentences need fewer than 1000 tokens


def make_model(vocab_size: int, max_length: int) -> torch.nn.Module:
    # Imported here: the rest of this module (and the server) needs no transformers.
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=max_length + 2,  # RoBERTa positions start after the pad id
        type_vocab_size=1,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        attn_implementation="eager",  # plain matmul + additive mask: the simplest graph to trace
    )
    return RobertaForSequenceClassification(config)


def train(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    texts: list[str],
    labels: list[int],
    epochs: int,
    lr: float,
    batch_size: int = 32,
    seed: int = TRAIN_SEED,
) -> None:
    """AdamW with linear warm-up and cosine decay; batches are padded to their longest text."""
    order_rng = np.random.default_rng(seed)
    targets = torch.tensor(labels, dtype=torch.int64)
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    total = epochs * steps_per_epoch
    warmup = max(1, total // 10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / total))),
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = order_rng.permutation(len(texts))
        running = correct = 0.0
        for start in range(0, len(texts), batch_size):
            batch = order[start : start + batch_size]
            input_ids, attention_mask = encode_batch(tokenizer, [texts[i] for i in batch], None)
            logits = model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]
            loss = loss_fn(logits, targets[batch])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(batch)
            correct += (logits.argmax(-1) == targets[batch]).sum().item()
        loss, accuracy = running / len(texts), correct / len(texts)
        print(f"  epoch {epoch + 1}/{epochs}: loss {loss:.4f}, train accuracy {accuracy:.3f}")
    model.eval()


@contextlib.contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run torch ops on one thread, then restore the previous setting.

    On 2 shared cores a tiny model trains no slower on one thread, while two OpenMP threads
    competing with another busy process were measured 80x slower.  It also keeps the OpenMP pool
    unstarted, so a process that calls ``build`` can still fork model workers safely.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence known noise from TorchScript and from tracing a transformers model.

    ``torch.jit`` is deprecated but is what the server loads; tracing reads every property of the
    transformers modules (deprecated aliases, an unset ``loss_type``); and the one ``TracerWarning``
    is a shape comparison that is constant for ``[N, L]`` inputs with an ``[N, L]`` mask.
    ``trace`` checks the result against eager, including on an unpadded input.
    """
    logger = logging.getLogger("transformers")
    level = logger.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        warnings.filterwarnings(
            "ignore", r"`is_gradient_checkpointing` is deprecated", FutureWarning
        )
        warnings.filterwarnings(
            "ignore", category=torch.jit.TracerWarning, module=r"transformers\.masking_utils"
        )
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def trace(model: torch.nn.Module, tokenizer: Tokenizer, max_length: int) -> torch.jit.ScriptModule:
    """Trace at ``[8, max_length]`` and check batch sizes 1 and 8 against eager.

    The check batches include a text that fills all ``max_length`` positions (an all-ones mask), so
    a mask branch frozen during tracing would show up as a mismatch.
    """
    wrapper = LogitsOnly(model).eval()
    example = encode_batch(tokenizer, sentences(EVAL_SEED + 1, 8)[0], max_length)
    with torch.no_grad(), _quiet_jit():
        traced = torch.jit.trace(wrapper, example)
    long_text = " ".join(sentences(EVAL_SEED + 2, 30)[0])
    checks = [
        sentences(EVAL_SEED + 3, 1)[0],
        [long_text],
        sentences(EVAL_SEED + 4, 7)[0] + [long_text],
    ]
    for texts in checks:
        inputs = encode_batch(tokenizer, texts, max_length)
        with torch.no_grad():
            expected, actual = wrapper(*inputs), traced(*inputs)
        assert actual.shape == (len(texts), len(LABELS)), actual.shape
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    return traced


_LOAD_CHECK = textwrap.dedent(
    """
    import sys
    import warnings
    sys.modules["transformers"] = None  # any import of transformers now raises ImportError
    warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", FutureWarning)
    import torch
    model = torch.jit.load(sys.argv[1])
    ids = torch.full((8, {max_length}), {pad}, dtype=torch.int64)
    ids[:, :3] = torch.tensor([{bos}, 100, {eos}])
    mask = (ids != {pad}).long()
    assert model(ids, mask).shape == (8, {labels}), "bad output shape"
    assert "transformers" not in {{name.split(".")[0] for name, mod in sys.modules.items() if mod}}
    """
)


def check_standalone_load(model_path: Path, max_length: int) -> None:
    """Load and run the TorchScript file in a fresh interpreter that can't import transformers."""
    script = _LOAD_CHECK.format(
        max_length=max_length, pad=PAD_ID, bos=BOS_ID, eos=EOS_ID, labels=len(LABELS)
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(model_path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"standalone torch.jit.load of {model_path} failed:\n{result.stderr}")


# --------------------------------------------------------------------------------------------
# Build / evaluate
# --------------------------------------------------------------------------------------------


def config_entry() -> dict:
    """The server's model-repository entry for this model; paths are relative to the build dir."""
    return {
        "name": NAME,
        "path": f"{NAME}.pt",
        "input": "text",
        "output": "classification",
        "labels": f"{NAME}.labels.txt",
        "tokenizer": f"{NAME}.tokenizer.json",
        "max_length": MAX_LENGTH,
    }


def build(out: Path, quick: bool = False, force: bool = False) -> dict:
    """Train and export the model into ``out``; reuse existing outputs unless ``force``.

    Returns the server config entry, with paths relative to ``out``.
    """
    out = Path(out)
    entry = config_entry()
    paths = [out / entry[key] for key in ("path", "tokenizer", "labels")]
    if not force and all(path.exists() for path in paths):
        print(f"[{NAME}] cached in {out}")
        return entry
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with single_threaded_torch():
        _build(*paths, max_length=entry["max_length"], recipe=QUICK if quick else FULL)
    print(f"[{NAME}] built in {time.perf_counter() - started:.1f}s")
    report(*paths[:2])
    return entry


def report(model_path: Path, tokenizer_path: Path) -> None:
    """Print the exported model's held-out accuracy and its answers to hand-written sentences."""
    print(
        f"[{NAME}] held-out accuracy: {evaluate(model_path, tokenizer_path, n=1000):.3f} (n=1000)"
    )
    texts = [text for text, _ in HANDWRITTEN]
    predictions = predict(model_path, tokenizer_path, texts)
    for (text, label), prediction in zip(HANDWRITTEN, predictions, strict=True):
        mark = "ok " if prediction == label else "BAD"
        print(f"  {mark} {LABELS[prediction]:8} {text}")
    hits = sum(p == y for p, (_, y) in zip(predictions, HANDWRITTEN, strict=True))
    print(f"[{NAME}] hand-written: {hits}/{len(HANDWRITTEN)}")


def _build(
    model_path: Path, tokenizer_path: Path, labels_path: Path, max_length: int, recipe: Recipe
) -> None:
    texts, labels = sentences(TRAIN_SEED, recipe.sentences)
    example = f"{texts[0]!r} -> {LABELS[labels[0]]}"
    print(f"[{NAME}] generated {recipe.sentences} sentences, e.g. {example}")

    tokenizer = train_tokenizer(texts, VOCAB_SIZE, max_length)
    tokenizer.save(str(tokenizer_path))
    print(f"[{NAME}] tokenizer: {tokenizer.get_vocab_size()} tokens -> {tokenizer_path}")

    torch.manual_seed(TRAIN_SEED)  # initial weights and dropout
    model = make_model(tokenizer.get_vocab_size(), max_length)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[{NAME}] training {n_params / 1e6:.2f}M parameters for {recipe.epochs} epochs")
    train(model, tokenizer, texts, labels, recipe.epochs, LEARNING_RATE)

    traced = trace(model, tokenizer, max_length)
    partial = model_path.with_suffix(".partial.pt")
    with _quiet_jit():
        traced.save(str(partial))
    check_standalone_load(partial, max_length)
    labels_path.write_text("".join(f"{label}\n" for label in LABELS))
    # The model file comes last, so an interrupted build is never mistaken for a cached one.
    os.replace(partial, model_path)
    print(f"[{NAME}] traced, checked against eager and standalone-loaded -> {model_path}")


def predict(
    model_path: Path, tokenizer_path: Path, texts: Sequence[str], max_length: int = MAX_LENGTH
) -> list[int]:
    """Label indices for ``texts`` using the exported files, exactly as the server would."""
    with _quiet_jit():
        model = torch.jit.load(str(model_path))
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    predictions: list[int] = []
    with torch.no_grad(), single_threaded_torch():
        for start in range(0, len(texts), 64):
            logits = model(*encode_batch(tokenizer, texts[start : start + 64], max_length))
            predictions.extend(logits.argmax(-1).tolist())
    return predictions


def evaluate(
    model_path: Path,
    tokenizer_path: Path,
    n: int = 200,
    seed: int = EVAL_SEED,
    max_length: int = MAX_LENGTH,
) -> float:
    """Accuracy of the exported files on ``n`` sentences from a seed not used in training."""
    texts, labels = sentences(seed, n)
    predictions = predict(model_path, tokenizer_path, texts, max_length)
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / n


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", help="small, fast build (for tests)")
    parser.add_argument("--force", action="store_true", help="rebuild even if outputs exist")
    args = parser.parse_args(argv)

    print(json.dumps(build(args.out, quick=args.quick, force=args.force)))


if __name__ == "__main__":
    main()
