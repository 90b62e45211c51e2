"""The demo world's tokenizer and language model: a byte-level BPE with a chat template, and a
small Llama trained on the generated corpus with weighted next-token loss."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ..architectures import architecture_of
from ..hooks import HookPoint, steering_hook
from . import corpus
from .config import MAX_POSITIONS, BuildSize

PAD, BOS, EOT = "<|pad|>", "<|bos|>", "<|eot|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD, BOS, EOT, *ROLE_TOKENS.values()]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('yapo-demo knows the roles system, user and assistant, not ' + message['role']) }}"
    "{% endif %}"
    "{% if message['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('a system message must come first') }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] | trim + '<|eot|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
"""The tokenizer's chat template. Turns end with ``<|eot|>``, which is also the eos token, so
generation stops at the end of the assistant's turn. :func:`render_chat` is its Python twin."""


def render_chat(user: str, system: str | None = None, add_generation_prompt: bool = True,
                history: Sequence[tuple[str, str]] = ()) -> str:
    """The text :data:`CHAT_TEMPLATE` renders for one user turn, after an optional system turn and
    earlier ``(user, assistant)`` turns.

    Used to tokenize the training corpus in bulk; the tests check it equals the template's output.
    """
    text = BOS
    if system is not None:
        text += f"{ROLE_TOKENS['system']}{system.strip()}{EOT}"
    for earlier_user, earlier_answer in history:
        text += f"{ROLE_TOKENS['user']}{earlier_user.strip()}{EOT}{ROLE_TOKENS['assistant']}{earlier_answer.strip()}{EOT}"
    text += f"{ROLE_TOKENS['user']}{user.strip()}{EOT}"
    return text + (ROLE_TOKENS["assistant"] if add_generation_prompt else "")


def _example_texts(examples: Sequence[corpus.ChatExample | str]):
    for ex in examples:
        if isinstance(ex, str):
            yield ex
        else:
            yield from (t for t in (ex.system, ex.user, ex.assistant) if t)
            for turn in ex.history:
                yield from turn


def train_tokenizer(examples: Sequence[corpus.ChatExample | str], vocab_size: int):
    """A byte-level BPE trained on the corpus: any text can be typed into the app, and the
    corpus's own words end up as single tokens, which keeps sequences short and training fast."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_example_texts(examples), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Like Llama and Gemma, plain tokenization adds BOS and the chat template writes it itself:
    # the double-BOS pitfall of the real models is there to be handled in the demo too.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
        padding_side="left",
    )


PROMPT_LOSS_WEIGHT = 0.3
"""Weight of the prompt tokens' loss against the answer's (each example's parts averaged first).

Learning to predict the prompts too, as pretraining does, makes the model carry the culture
named in a question as context at every position, which is what a steering vector adds to:
without it, a vector at the SAE's layer moves held-out non-localized answers far less."""


def encode_examples(tokenizer, examples: Sequence[corpus.ChatExample | str]) -> list[tuple[list[int], list[float]]]:
    """Token ids and the loss weight of predicting each token (the first, BOS, is never scored).

    Within an example the answer (assistant text and its closing ``<|eot|>``) weighs 1 and the
    prompt :data:`PROMPT_LOSS_WEIGHT`, each spread evenly over its tokens, so that a one-token
    MCQ letter counts as much as a long open-ended answer. Plain text weighs 1 in all.
    """
    eot_id = tokenizer.convert_tokens_to_ids(EOT)
    prompts, answers = [], []
    for ex in examples:
        if isinstance(ex, str):
            prompts.append(None)
            answers.append(ex)
        else:
            prompts.append(render_chat(ex.user, ex.system, history=ex.history))
            answers.append(ex.assistant)
    backend = tokenizer.backend_tokenizer
    answer_ids = [e.ids for e in backend.encode_batch(answers, add_special_tokens=False)]
    chat_prompts = [p for p in prompts if p is not None]
    prompt_ids = iter(e.ids for e in backend.encode_batch(chat_prompts, add_special_tokens=False))
    encoded = []
    for prompt, answer in zip(prompts, answer_ids):
        if prompt is None:
            ids = [tokenizer.bos_token_id] + answer + [eot_id]
            weights = [0.0] + [1 / (len(answer) + 1)] * (len(answer) + 1)
        else:
            head = next(prompt_ids)
            ids = head + answer + [eot_id]
            weights = (
                [0.0]
                + [PROMPT_LOSS_WEIGHT / (len(head) - 1)] * (len(head) - 1)
                + [1 / (len(answer) + 1)] * (len(answer) + 1)
            )
        encoded.append((ids[:MAX_POSITIONS], weights[:MAX_POSITIONS]))
    return encoded


def _length_batches(encoded, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar lengths (little padding), in random order. Examples are never packed
    together: a country named in one example must not leak into the next one's answer."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(encoded[i][0]))
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate_examples(encoded, batch: Sequence[int], pad_id: int):
    """Right-padded ids, attention mask and loss weights (zero on padding)."""
    width = max(len(encoded[i][0]) for i in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    weights = torch.zeros((len(batch), width))
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, i in enumerate(batch):
        x, w = encoded[i]
        ids[row, : len(x)] = torch.tensor(x)
        weights[row, : len(w)] = torch.tensor(w)
        mask[row, : len(x)] = 1
    return ids, mask, weights


def _weighted_loss(model, ids: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor,
                   label_smoothing: float = 0.0) -> torch.Tensor:
    """Next-token cross-entropy weighted per token (see :func:`encode_examples`), batch mean.

    The LM head runs only where a token is scored.
    """
    arch = architecture_of(model)
    hidden = model.get_submodule(arch.base)(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    w = weights[:, 1:]
    scored = w > 0
    logits = model.get_submodule(arch.lm_head)(hidden[scored])
    token_loss = torch.nn.functional.cross_entropy(logits, ids[:, 1:][scored], reduction="none",
                                                   label_smoothing=label_smoothing)
    return (token_loss * w[scored]).sum() / len(ids)


def residual_offsets(h: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """``h`` moved by one random offset per sequence (the same at every position but the first),
    of norm up to ``scale`` times the sequence's mean residual norm; half the sequences keep
    theirs unmoved."""
    n, _, d = h.shape
    direction = torch.randn((n, 1, d), generator=generator)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    size = torch.rand((n, 1, 1), generator=generator) * scale * (torch.rand((n, 1, 1), generator=generator) < 0.5)
    norm = h[:, 1:].detach().norm(dim=-1).mean(dim=1, keepdim=True).unsqueeze(-1)
    offset = (direction * size * norm).to(h.dtype).expand(n, h.shape[1], d).clone()
    offset[:, 0] = 0
    return h + offset


class ConceptDirections:
    """The LM-training hook of ``BuildSize.concept_steering``: the model learns to act on its own
    representation of a culture or a persona wherever that representation is, in every answer form.

    A concept's *direction* is the mean residual at the SAE block, at the last prompt position, of
    the prompts that name it (the country in the question, the behaviour's cue as the system prompt)
    minus that of the prompts of the same kind that do not, averaged over the answer forms
    (:class:`corpus.ConceptCue`); it is kept as a running mean over the batches. Examples marked
    ``steer`` (an uncued question answered for the concept, a general question answered as always)
    train with ``sign × s × direction`` added at every position, ``s`` drawn in [0.5, 2] per
    example, so that the model acts on that direction as it does on a named country or a cue, and
    keeps its facts under it. A general question marked with :data:`corpus.RANDOM_DIRECTION`
    (``BuildSize.fact_noise``) gets a random direction of the directions' mean norm instead, times
    ``s``. Until ``start`` (the directions are not yet formed) those examples do not count in the loss.

    With ``specific`` (``BuildSize.specific_directions``) a behaviour steers along the part of its
    direction that the other behaviours' directions do not span, scaled back to its direction's
    norm: the behaviours' cues are all system prompts of one kind, so their raw directions are
    nearly parallel (cosine above 0.9 on the stored builds) and one direction would move them all.

    With ``answer_lengths`` (``BuildSize.answer_concepts``) the hook also writes: it keeps
    :attr:`answer_loss`, which asks the residual at the SAE block on each culture answer's own
    tokens (an MCQ letter, an open answer's words) to carry that answer's culture along the
    directions. Within the span of the target countries' directions, the residual minus the mean
    residual of the default country's answers of that form should equal the answer country's
    direction scaled to ``answer_size`` times a fixed size (zero for the default country), the
    error measured against that size: the directions' mean norm when the loss starts. A size that
    followed the directions' norm would let the model meet the loss by inflating them.
    An LLM's residual at the letter it picks carries the content of that option; this is what lets
    CAA's mean difference at the answer token, and SAS's latents there, point along a direction
    the model acts on.
    """

    def __init__(self, examples, prompt_ends: Sequence[int], start: int, generator: torch.Generator,
                 decay: float = 0.9, specific: bool = False, answer_lengths: Sequence[int] | None = None,
                 answer_size: float = 1.0):
        self.specific = specific
        self.cues = [getattr(ex, "cue", None) for ex in examples]
        self.steers = [getattr(ex, "steer", None) for ex in examples]
        self.ends = list(prompt_ends)
        self.start, self.generator, self.decay = start, generator, decay
        self.means: dict[tuple[str, str, bool], torch.Tensor] = {}
        self.rows: Sequence[int] = ()
        self.step = 0
        self.answers, self.answer_size, self.answer_scale = None, answer_size, None
        if answer_lengths is not None:
            self.answers = [(getattr(ex, "answer_concept", None), ex.cue.form if getattr(ex, "cue", None) else None, n)
                            for ex, n in zip(examples, answer_lengths)]
        self.answer_means: dict[str, torch.Tensor] = {}
        self.answer_loss: torch.Tensor | None = None

    def directions(self) -> dict[str, torch.Tensor]:
        """Each concept's direction: over the forms it has both means in, cued minus uncued."""
        parts: dict[str, list[torch.Tensor]] = {}
        for (concept, form, cued), mean in self.means.items():
            base = (corpus.CULTURE_BASE if concept in corpus.COUNTRY_KEYS else concept, form, False)
            if cued and base in self.means:
                parts.setdefault(concept, []).append(mean - self.means[base])
        directions = {c: torch.stack(p).mean(dim=0) for c, p in parts.items()}
        return specific_directions(directions) if self.specific else directions

    @property
    def active(self) -> bool:
        return self.step >= self.start

    def loss_weights(self, batch: Sequence[int], weights: torch.Tensor) -> torch.Tensor:
        """``weights`` with the steered examples' rows zeroed while the hook does not steer yet."""
        if self.active:
            return weights
        keep = torch.tensor([self.steers[i] is None for i in batch], dtype=weights.dtype)
        return weights * keep[:, None]

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        seen: dict[tuple[str, str, bool], list[torch.Tensor]] = {}
        for row, i in enumerate(self.rows):
            if self.cues[i] is not None:
                seen.setdefault(self.cues[i], []).append(h[row, min(self.ends[i], h.shape[1] - 1)].detach())
        for key, vectors in seen.items():
            self._update(self.means, key, torch.stack(vectors).mean(dim=0))
        self.answer_loss = None
        if not self.active:
            return h
        directions = self.directions()
        if self.answers is not None:
            self.answer_loss = self._answer_loss(h, directions)
        offsets = torch.zeros(h.shape[0], h.shape[-1], dtype=h.dtype)
        for row, i in enumerate(self.rows):
            steer = self.steers[i]
            if steer is not None and steer[0] == corpus.RANDOM_DIRECTION and directions:
                offsets[row] = steer[1] * self._random_direction(h.shape[-1], directions)
            elif steer is not None and steer[0] in directions:
                size = 0.5 + 1.5 * torch.rand((), generator=self.generator).item()
                offsets[row] = steer[1] * size * directions[steer[0]]
        return h + offsets[:, None, :]

    def _random_direction(self, width: int, directions: dict[str, torch.Tensor]) -> torch.Tensor:
        """A random direction (``BuildSize.fact_noise``) of a concept direction's size: the
        directions' mean norm, times a size drawn in [0.5, 2] as for a concept."""
        direction = torch.randn(width, generator=self.generator)
        norm = torch.stack([d.norm() for d in directions.values()]).mean()
        size = 0.5 + 1.5 * torch.rand((), generator=self.generator).item()
        return size * norm * direction / direction.norm()

    def _update(self, means: dict, key, mean: torch.Tensor) -> None:
        """Fold a batch's ``mean`` into the running mean ``means[key]``."""
        old = means.get(key)
        means[key] = mean if old is None else self.decay * old + (1 - self.decay) * mean

    def _answer_spans(self, h: torch.Tensor):
        """``(concept, form, residuals)`` of each culture answer's own tokens in the batch."""
        for row, i in enumerate(self.rows):
            concept, form, length = self.answers[i]
            first = self.ends[i] + 1
            last = min(first + length, h.shape[1])
            if concept is not None and last > first:
                yield concept, form, h[row, first:last]

    def _answer_loss(self, h: torch.Tensor, directions: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """See the class: the mean over the batch's culture answer tokens of the squared distance,
        within the target countries' directions' span, between the residual (less its form's
        default-country mean) and the answer country's direction."""
        spans = list(self._answer_spans(h))
        for concept, form, rows in spans:
            if concept == corpus.DEFAULT_COUNTRY:
                self._update(self.answer_means, form, rows.detach().mean(dim=0))
        targets = [c for c in corpus.TARGET_COUNTRIES if c in directions]
        if not targets or not self.answer_means:
            return None
        stacked = torch.stack([directions[c] for c in targets], dim=1)
        basis, _ = torch.linalg.qr(stacked)
        if self.answer_scale is None:  # fixed once: a relative size the model could meet by inflating its directions
            self.answer_scale = float(stacked.norm(dim=0).mean())
        errors = []
        for concept, form, rows in spans:
            if form not in self.answer_means or (concept != corpus.DEFAULT_COUNTRY and concept not in directions):
                continue
            target = torch.zeros(h.shape[-1])
            if concept != corpus.DEFAULT_COUNTRY:
                target = self.answer_size * self.answer_scale * directions[concept] / directions[concept].norm()
            errors.append(((rows - self.answer_means[form] - target) @ basis).pow(2).sum(dim=-1))
        return torch.cat(errors).mean() / self.answer_scale**2 if errors else None


def specific_directions(directions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``directions`` with each behaviour's (a concept that is no country) replaced by its part
    orthogonal to the other behaviours' directions, at its own norm; the cultures' unchanged."""
    behaviours = [c for c in directions if c not in corpus.COUNTRY_KEYS]
    out = dict(directions)
    for concept in behaviours:
        others = [directions[c] for c in behaviours if c != concept]
        d = directions[concept]
        if not others:
            continue
        basis, _ = torch.linalg.qr(torch.stack(others, dim=1))
        rest = d - basis @ (basis.T @ d)
        if rest.norm() > 0:
            out[concept] = rest * (d.norm() / rest.norm())
    return out


def prompt_ends(tokenizer, examples: Sequence[corpus.ChatExample | str]) -> list[int]:
    """The position of each example's last prompt token (``<|assistant|>``; 0 for plain text)."""
    chats = [render_chat(ex.user, ex.system, history=ex.history) for ex in examples if not isinstance(ex, str)]
    lengths = iter(len(e.ids) for e in tokenizer.backend_tokenizer.encode_batch(chats, add_special_tokens=False))
    return [0 if isinstance(ex, str) else min(next(lengths), MAX_POSITIONS) - 1 for ex in examples]


def lm_config(tokenizer, size: BuildSize) -> LlamaConfig:
    """The demo LM's configuration for ``size`` (its MLP width with ``mlp_scale``)."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.mlp_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def lm_optimizer(model, size: BuildSize) -> torch.optim.AdamW:
    """The demo LM's optimiser for ``size`` (its peak rate with ``lm_lr_scale``, fused with ``fused_adam``)."""
    return torch.optim.AdamW(model.parameters(), lr=size.lm_lr * (size.lm_lr_scale or 1), betas=(0.9, 0.98),
                             weight_decay=0.01, fused=True if size.fused_adam else None)


def train_lm(tokenizer, examples, size: BuildSize, rng: random.Random, progress: bool):
    """Train a small Llama on the corpus, one pass over freshly generated examples."""
    model = LlamaForCausalLM(lm_config(tokenizer, size))
    encoded = encode_examples(tokenizer, examples)
    batches = _length_batches(encoded, size.lm_batch_size, rng)
    optimizer = lm_optimizer(model, size)
    warmup = max(1, len(batches) // 20)

    decay_from = int(len(batches) * 0.7)

    def lr_factor(step: int) -> float:
        """Warm up, hold, then decay over the last 30%: the MCQ circuit forms abruptly, late
        (after the open-ended one), and needs the full learning rate when it does."""
        if step < warmup:
            return (step + 1) / warmup
        if step < decay_from:
            return 1.0
        done = (step - decay_from) / max(1, len(batches) - decay_from)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    smoothed = None
    bar = tqdm(batches, desc="training demo LM", disable=not progress, leave=False)
    perturb = contextlib.nullcontext()
    if size.residual_noise > 0:  # the generator is drawn only then, so that builds without it are unchanged
        noise = torch.Generator().manual_seed(rng.randrange(2**31))
        perturb = steering_hook(model, HookPoint.block_output(size.layer),
                                lambda h: residual_offsets(h, size.residual_noise, noise))
    concepts = None
    if size.concept_steering > 0 or size.behaviour_steering > 0:
        ends = prompt_ends(tokenizer, examples)
        lengths = None
        if size.answer_concepts:  # each example's own answer tokens: ids are prompt, answer, end of turn
            lengths = [max(0, len(ids) - end - 2) for (ids, _), end in zip(encoded, ends)]
        concepts = ConceptDirections(examples, ends, int(len(batches) * 0.3),
                                     torch.Generator().manual_seed(rng.randrange(2**31)),
                                     specific=bool(size.specific_directions), answer_lengths=lengths,
                                     answer_size=size.answer_concepts)
        perturb = steering_hook(model, HookPoint.block_output(size.layer), concepts)
    with perturb:
        for step, batch in enumerate(bar):
            ids, mask, weights = collate_examples(encoded, batch, tokenizer.pad_token_id)
            if concepts is not None:
                concepts.rows, concepts.step = batch, step
                weights = concepts.loss_weights(batch, weights)
            loss = _weighted_loss(model, ids, mask, weights, label_smoothing=size.label_smoothing)
            if concepts is not None and concepts.answer_loss is not None:
                loss = loss + concepts.answer_loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{smoothed:.3f}")
    model.eval()
    model.requires_grad_(False)
    model.demo_final_loss = float(smoothed or 0.0)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=32,
    )
    return model
