"""Preference pairs as token sequences: the prompt and answers rendered with the tokenizer's chat
template (a plain ``User:``/``Assistant:`` format for models without one, see
:func:`render_prompt`), tokenised, cut to a maximum length, and collated into padded batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from .data import PreferencePair
from .errors import DataError

PLAIN_USER, PLAIN_ASSISTANT = "User: ", "\nAssistant:"


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _messages(prompt: str, system: str | None, tokenizer) -> list[dict[str, str]]:
    """Chat messages; a system prompt only when given, folded into the user turn when the
    template has no system role (Gemma's raises on one)."""
    user = {"role": "user", "content": prompt}
    if not system:
        return [user]
    with_system = [{"role": "system", "content": system}, user]
    from jinja2 import TemplateError  # what a template's raise_exception raises

    try:
        tokenizer.apply_chat_template(with_system, tokenize=False, add_generation_prompt=True)
        return with_system
    except TemplateError:
        return [{"role": "user", "content": f"{system}\n\n{prompt}"}]


def render_prompt(tokenizer, prompt: str, system: str | None = None) -> str:
    """The text the model sees before its answer.

    With a chat template: the template with ``add_generation_prompt=True`` (it carries BOS, so
    it is tokenised without adding special tokens again). Without one, the plain format
    ``[system + "\\n\\n"] + "User: " + prompt + "\\nAssistant:"`` (BOS added by the tokenizer).
    """
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            _messages(prompt, system, tokenizer), tokenize=False, add_generation_prompt=True
        )
    head = f"{system}\n\n" if system else ""
    return f"{head}{PLAIN_USER}{prompt}{PLAIN_ASSISTANT}"


def render_answer(tokenizer, prompt: str, answer: str, system: str | None = None) -> str:
    """The assistant turn for ``answer``, up to and including the template's end of turn."""
    if has_chat_template(tokenizer):
        messages = _messages(prompt, system, tokenizer)
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": answer}], tokenize=False
        )
        if not full.startswith(head):
            raise DataError("the chat template renders the answer turn inconsistently with its prompt.")
        return full[len(head):]
    return f" {answer}{tokenizer.eos_token or ''}"


def encode_prompt(tokenizer, prompt: str, system: str | None = None) -> list[int]:
    text = render_prompt(tokenizer, prompt, system)
    return tokenizer(text, add_special_tokens=not has_chat_template(tokenizer))["input_ids"]


@dataclass
class EncodedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    truncated: bool = False


@dataclass
class EncodeReport:
    kept: int
    truncated: int
    dropped: int

    def describe(self) -> str:
        return (f"{self.kept} pairs kept, {self.truncated} with the start of the user's text cut (the template kept), "
                f"{self.dropped} dropped")


def fit_prompt(tokenizer, prompt: str, system: str | None, room: int) -> tuple[list[int] | None, bool]:
    """The prompt's tokens in at most ``room`` tokens, and whether they were cut: whole when it
    fits, else with the start of the user's text cut, so that the BOS, the chat template's header
    and its closing (the assistant turn's start) are always there. ``None`` when even the template
    alone does not fit."""
    ids = encode_prompt(tokenizer, prompt, system)
    if len(ids) <= room:
        return ids, False
    content = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    keep = room - (len(ids) - len(content))
    while keep > 0:
        ids = encode_prompt(tokenizer, tokenizer.decode(content[-keep:]), system)
        if len(ids) <= room:
            return ids, True
        keep -= max(1, len(ids) - room)  # re-tokenising the cut text can merge differently
    return None, True


def encode_pairs(
    tokenizer, pairs: Iterable[PreferencePair], max_length: int = 512
) -> tuple[list[EncodedPair], EncodeReport]:
    """Tokenise pairs. Over-long ones lose the start of the user's text (see :func:`fit_prompt`),
    never answer tokens nor the template around them; a pair whose answer and template alone do
    not fit is dropped. Both are counted in the report."""
    out, truncated, dropped = [], 0, 0
    for pair in pairs:
        answers = [
            tokenizer(render_answer(tokenizer, pair.prompt, a, pair.system), add_special_tokens=False)["input_ids"]
            for a in (pair.chosen, pair.rejected)
        ]
        room = max_length - max(len(a) for a in answers)
        prompt_ids, cut = fit_prompt(tokenizer, pair.prompt, pair.system, room) if room >= 1 else (None, True)
        if prompt_ids is None or min(len(a) for a in answers) == 0:
            dropped += 1
            continue
        truncated += cut
        out.append(EncodedPair(prompt_ids, answers[0], answers[1], cut))
    return out, EncodeReport(len(out), truncated, dropped)


@dataclass
class SequenceBatch:
    """Chosen sequences in rows ``0..B-1``, rejected in ``B..2B-1``, right-padded.

    ``answer_mask[i, t]`` is True where token ``t`` of row ``i`` belongs to the answer.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    answer_mask: torch.Tensor
    prompt_lengths: torch.Tensor

    def to(self, device) -> "SequenceBatch":
        return SequenceBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.answer_mask, self.prompt_lengths)))

    @property
    def n_pairs(self) -> int:
        return self.input_ids.shape[0] // 2


def collate(pairs: Sequence[EncodedPair], pad_token_id: int) -> SequenceBatch:
    rows = [p.prompt_ids + p.chosen_ids for p in pairs] + [p.prompt_ids + p.rejected_ids for p in pairs]
    prompt_lengths = [len(p.prompt_ids) for p in pairs] * 2
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    answer = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, n_prompt) in enumerate(zip(rows, prompt_lengths)):
        ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = 1
        answer[i, n_prompt : len(row)] = True
    return SequenceBatch(ids, attn, answer, torch.tensor(prompt_lengths))
