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
from .build_steering import ConceptDirections, residual_offsets
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
                                     answer_size=size.answer_concepts, floor=size.steer_floor or 0.5)
        perturb = steering_hook(model, HookPoint.block_output(size.layer), concepts)
    average, averaged, average_from = None, 0, len(batches) - round(len(batches) * min(size.lm_average, 1.0))
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
            if size.lm_average and step >= average_from:  # a running mean of the weights over the last steps
                averaged += 1
                if average is None:
                    average = [p.detach().clone() for p in model.parameters()]
                else:
                    for mean, p in zip(average, model.parameters()):
                        mean.add_(p.detach() - mean, alpha=1 / averaged)
            smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{smoothed:.3f}")
    if average is not None:
        with torch.no_grad():
            for mean, p in zip(average, model.parameters()):
                p.copy_(mean)
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
