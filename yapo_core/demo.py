"""The demo world: a tiny model organism in which steering has a real, measurable effect offline.

Real use needs multi-GB, often gated hub models. The demo world is built on the user's machine
in a few minutes on CPU from a seed, with nothing downloaded:

1. a generated corpus (:mod:`yapo_core.demo_corpus`): culture questions answered with a
   default-culture bias when no country is named, two BiPO-style behaviours, general facts;
2. a byte-level BPE tokenizer with a chat template, trained in-process (``tokenizers``);
3. a small Llama causal LM trained on the corpus, saved with ``save_pretrained``;
4. a TopK SAE trained with sae-lens's own training step on the LM's residual stream at the
   output of a middle block, saved in sae-lens's inference format;
5. task files in the schemas of the real data (Deep-Culture-Lense, BiPO), whose rejected
   answers are the trained model's own greedy answers, as in the paper's data preparation.

The result is loaded exactly like hub models and SAEs: ``AutoModelForCausalLM.from_pretrained``,
``AutoTokenizer.from_pretrained`` and ``sae_lens.SAE.load_from_disk`` on the folders of
:class:`DemoWorld`. A finished build is marked by a completion file written last, and reused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import demo_corpus as corpus
from .errors import YapoError

DEMO_MODEL_NAME = "yapo-demo"
FORMAT_VERSION = 2
"""Bump when the corpus, model or file layout changes, so old caches are not reused."""

BUILD_THREADS = 2
"""Torch threads during a build: fixed, because float results (and so the files) depend on it."""

COMPLETE_MARKER = "COMPLETE"
SIZES = ("full", "mini")

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


def render_chat(user: str, system: str | None = None, add_generation_prompt: bool = True) -> str:
    """The text :data:`CHAT_TEMPLATE` renders for one user turn (and an optional system turn).

    Used to tokenize the training corpus in bulk; the tests check it equals the template's output.
    """
    text = BOS
    if system is not None:
        text += f"{ROLE_TOKENS['system']}{system.strip()}{EOT}"
    text += f"{ROLE_TOKENS['user']}{user.strip()}{EOT}"
    return text + (ROLE_TOKENS["assistant"] if add_generation_prompt else "")


@dataclass(frozen=True)
class BuildSize:
    """Everything that differs between the full world and the seconds-scale test world."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    lm_examples: int
    lm_batch: int
    lm_lr: float
    sae_expansion: int
    sae_k: int
    sae_activation_sequences: int
    sae_training_samples: int
    sae_batch: int
    sae_lr: float
    culture_rows: int  # rows per country, localization status and split (train; test gets half)
    generation_batch: int = 64

    @property
    def layer(self) -> int:
        """The block whose output the SAE reads: the middle of the stack (block 1 of 0-3), with
        as many blocks after it as up to it, to turn a steered residual stream into an answer."""
        return (self.num_layers - 1) // 2


BUILD_SIZES: dict[str, BuildSize] = {
    "full": BuildSize(
        vocab_size=2048,
        hidden_size=128,
        intermediate_size=384,
        num_layers=4,
        num_heads=4,
        lm_examples=57600,
        lm_batch=32,
        lm_lr=2e-3,
        sae_expansion=8,
        sae_k=16,
        sae_activation_sequences=3000,
        sae_training_samples=600_000,
        sae_batch=512,
        sae_lr=1e-3,
        culture_rows=128,
    ),
    "mini": BuildSize(
        vocab_size=400,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=2,
        lm_examples=160,
        lm_batch=16,
        lm_lr=3e-3,
        sae_expansion=4,
        sae_k=4,
        sae_activation_sequences=32,
        sae_training_samples=2048,
        sae_batch=256,
        sae_lr=1e-3,
        culture_rows=2,
        generation_batch=32,
    ),
}


TRAINING = {"lr": 0.3, "warmup_steps": 20, "batch_size": 32, "max_steps": 600, "mcq_rejected": "every_option"}
"""Training settings (:class:`~yapo_core.training.TrainConfig` fields) for vectors on the full
demo world; everything else keeps the public runs' defaults (β 0.1, cosine schedule, clipping 1).

The learning rate is 600× the public runs' 5e-4. The demo LM was trained to near-zero loss on
templated text, so its answers are far more confident than an instruction-tuned LLM's: moving a
one-letter MCQ answer from the default culture to another takes a latent-space vector of norm
about 170 (active latents average about 10 here), which 600 steps at 5e-4 cannot reach (the loss
stays at 0.69).

MCQ pairs are trained against every wrong option (``mcq_rejected="every_option"``), not only
the model's default answer: against the default alone the objective is met (the chosen letter
beats the default on 100% of the pairs) while, in some topics, a third culture's letter wins the
argmax, e.g. uk 0.72 held-out MCQ accuracy against the default only, 1.00 against every option.
Open-ended and two-option pairs are unaffected. Measured with ``scripts/evaluate_demo_world.py``;
see the README.
"""


@dataclass
class DemoWorld:
    """Where a built demo world lives, and what its build measured (``stats.json``)."""

    root: Path
    model_dir: Path
    sae_dir: Path
    layer: int
    tasks_dir: Path
    stats: dict = field(default_factory=dict)

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_resid_post"


def default_cache_dir(seed: int = 0, size: str = "full") -> Path:
    """``$YAPO_CACHE_DIR`` (default ``~/.cache/yapo-studio``) ``/demo/v<format>-seed<seed>``.

    The mini world gets a ``-mini`` suffix so that a test build never replaces the real one.
    """
    base = Path(os.environ.get("YAPO_CACHE_DIR", Path.home() / ".cache" / "yapo-studio")).expanduser()
    return base / "demo" / (f"v{FORMAT_VERSION}-seed{seed}" + ("" if size == "full" else f"-{size}"))


def _world_at(root: Path, layer: int, stats: dict | None = None) -> DemoWorld:
    return DemoWorld(
        root=root,
        model_dir=root / "model",
        sae_dir=root / "sae",
        layer=layer,
        tasks_dir=root / "tasks",
        stats=stats or {},
    )


def _read_complete(root: Path) -> dict | None:
    marker = root / COMPLETE_MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def load_demo_world(cache_dir: str | os.PathLike | None = None, seed: int = 0, size: str = "full") -> DemoWorld | None:
    """The finished world at ``cache_dir`` (or the default folder), or None when there is none."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(seed, size)
    marker = _read_complete(root)
    if marker is None or marker.get("format_version") != FORMAT_VERSION:
        return None
    if marker.get("seed") != seed or marker.get("size") != size:
        return None
    stats = json.loads((root / "stats.json").read_text())
    return _world_at(root, marker["layer"], stats)


def build_demo_world(
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    size: str = "full",
    force: bool = False,
    progress: bool = True,
) -> DemoWorld:
    """Build the demo world into ``cache_dir`` (default :func:`default_cache_dir`), or reuse it.

    A world is reused when its completion marker names the same format version, seed and size.
    Otherwise (or with ``force``) it is built in a sibling temporary folder and moved into place
    at the end, so an interrupted build never leaves a half-written world that looks finished.
    ``size="mini"`` is a seconds-scale build of the same pipeline, for tests.
    """
    if size not in BUILD_SIZES:
        raise YapoError(f"demo world size {size!r} is unknown; use one of {list(BUILD_SIZES)}.")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(seed, size)
    if not force:
        world = load_demo_world(root, seed, size)
        if world is not None:
            return world
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.building-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        world = _build(staging, seed, BUILD_SIZES[size], size, progress)
        _replace_world(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return _world_at(root, world.layer, world.stats)


_WORLD_ENTRIES = {"model", "sae", "tasks", "stats.json", COMPLETE_MARKER}


def _replace_world(staging: Path, root: Path) -> None:
    """Move a finished build to ``root``, removing an older world there but nothing else."""
    if root.exists():
        unknown = sorted(p.name for p in root.iterdir() if p.name not in _WORLD_ENTRIES)
        if unknown:
            raise YapoError(
                f"cannot build the demo world into {str(root)!r}: it holds files the build did not "
                f"write ({', '.join(unknown[:5])}); choose an empty or new folder."
            )
        (root / COMPLETE_MARKER).unlink(missing_ok=True)
        shutil.rmtree(root)
    os.replace(staging, root)


@contextmanager
def _deterministic(seed: int):
    """Seed every generator the build touches and fix the thread count; restore threads after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _build(root: Path, seed: int, size: BuildSize, size_name: str, progress: bool) -> DemoWorld:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    world = _world_at(root, size.layer)
    stages = tqdm(total=6, desc="demo world", disable=not progress, unit="stage")

    def stage(name: str) -> None:
        timings[name] = round(time.perf_counter() - started - sum(timings.values()), 2)
        stages.set_postfix_str(name)
        stages.update(1)

    with _deterministic(seed):
        rng = random.Random(seed)
        culture_train, culture_test = corpus.split_question_keys(random.Random(rng.random()))
        behaviour_splits = {
            b.key: corpus.split_behaviour_keys(random.Random(rng.random()), b) for b in corpus.BEHAVIOURS
        }
        behaviour_train = [k for train, _ in behaviour_splits.values() for k in train]
        examples = corpus.corpus_stream(random.Random(rng.random()), size.lm_examples, culture_train, behaviour_train)
        stage("corpus")

        tokenizer = _train_tokenizer(examples, size.vocab_size)
        stage("tokenizer")

        model = _train_lm(tokenizer, examples, size, random.Random(rng.random()), progress)
        world.model_dir.mkdir(parents=True)
        model.save_pretrained(world.model_dir)
        tokenizer.save_pretrained(world.model_dir)
        stage("model")

        activation_texts = corpus.corpus_stream(
            random.Random(rng.random()), size.sae_activation_sequences, culture_train, behaviour_train
        )
        sae_stats = _train_sae(model, tokenizer, activation_texts, size, world, progress)
        stage("sae")

        task_stats = _write_tasks(
            model, tokenizer, world.tasks_dir, culture_train, culture_test, behaviour_splits,
            size, random.Random(rng.random()), progress,
        )
        stage("tasks")

    stats = {
        "name": DEMO_MODEL_NAME,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "size": size_name,
        "layer": size.layer,
        "hook_name": world.hook_name,
        "model": {
            "architecture": "LlamaForCausalLM",
            "parameters": sum(p.numel() for p in model.parameters()),
            "hidden_size": size.hidden_size,
            "num_layers": size.num_layers,
            "vocab_size": len(tokenizer),
            "training_examples": size.lm_examples,
            "final_train_loss": round(model.demo_final_loss, 4),
        },
        "sae": sae_stats,
        **task_stats,
        "default_country": corpus.DEFAULT_COUNTRY,
        "countries": list(corpus.COUNTRY_KEYS),
        "versions": _versions(),
    }
    stage("stats")
    stages.close()
    stats["build_seconds"] = round(time.perf_counter() - started, 1)
    stats["stage_seconds"] = timings
    stats["file_bytes"] = _file_sizes(root)
    (root / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    marker = {"format_version": FORMAT_VERSION, "seed": seed, "size": size_name, "layer": size.layer}
    (root / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")
    world.stats = stats
    return world


def _versions() -> dict[str, str]:
    import sae_lens
    import tokenizers
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sae_lens": sae_lens.__version__,
        "tokenizers": tokenizers.__version__,
    }


def _file_sizes(root: Path) -> dict[str, int]:
    sizes = {}
    for part in ("model", "sae", "tasks"):
        sizes[part] = sum(p.stat().st_size for p in (root / part).rglob("*") if p.is_file())
    sizes["total"] = sum(sizes.values())
    return sizes


# --- tokenizer -------------------------------------------------------------------------------


def _example_texts(examples: Sequence[corpus.ChatExample | str]):
    for ex in examples:
        if isinstance(ex, str):
            yield ex
        else:
            yield from (t for t in (ex.system, ex.user, ex.assistant) if t)


def _train_tokenizer(examples: Sequence[corpus.ChatExample | str], vocab_size: int):
    """A byte-level BPE trained on the corpus: any text can be typed into the app, and the
    corpus's own words end up as single tokens, which keeps sequences short and training fast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

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
        model_max_length=_MAX_POSITIONS,
        padding_side="left",
    )


# --- language model --------------------------------------------------------------------------

_MAX_POSITIONS = 256
PROMPT_LOSS_WEIGHT = 0.3
"""Weight of the prompt tokens' loss against the answer's (each example's parts averaged first).

Learning to predict the prompts too, as pretraining does, makes the model carry the culture
named in a question as context at every position, which is what a steering vector adds to.
Measured while building the world: without it, no vector at the SAE's layer moved held-out
non-localized MCQ answers to the target culture beyond 42 %; with it, a vector in the SAE's
latent space trained with cross-entropy on the right letter reaches 90 % for egypt (the
preference objective: 83 %, see the README)."""


def _encode_examples(tokenizer, examples: Sequence[corpus.ChatExample | str]) -> list[tuple[list[int], list[float]]]:
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
            prompts.append(render_chat(ex.user, ex.system))
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
        encoded.append((ids[:_MAX_POSITIONS], weights[:_MAX_POSITIONS]))
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


def _collate(encoded, batch: Sequence[int], pad_id: int):
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


def _weighted_loss(model, ids: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy weighted per token (see :func:`_encode_examples`), batch mean.

    The LM head runs only where a token is scored.
    """
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    w = weights[:, 1:]
    scored = w > 0
    token_loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[scored]), ids[:, 1:][scored], reduction="none")
    return (token_loss * w[scored]).sum() / len(ids)


def _train_lm(tokenizer, examples, size: BuildSize, rng: random.Random, progress: bool):
    """Train a small Llama on the corpus, one pass over freshly generated examples."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_heads,
        max_position_embeddings=_MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    encoded = _encode_examples(tokenizer, examples)
    batches = _length_batches(encoded, size.lm_batch, rng)
    optimizer = torch.optim.AdamW(model.parameters(), lr=size.lm_lr, betas=(0.9, 0.98), weight_decay=0.01)
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
    for step, batch in enumerate(bar):
        loss = _weighted_loss(model, *_collate(encoded, batch, tokenizer.pad_token_id))
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


# --- SAE -------------------------------------------------------------------------------------


@torch.no_grad()
def _residual_activations(model, tokenizer, examples, layer: int, batch_size: int = 64) -> torch.Tensor:
    """Outputs of block ``layer`` at every real token of the examples (BOS and padding left out,
    as real SAEs leave out BOS: its huge, constant activation would dominate the variance)."""
    encoded = _encode_examples(tokenizer, examples)
    captured = []
    handle = model.model.layers[layer].register_forward_hook(lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out))
    rows = []
    try:
        for start in range(0, len(encoded), batch_size):
            batch = list(range(start, min(start + batch_size, len(encoded))))
            ids, mask, _ = _collate(encoded, batch, tokenizer.pad_token_id)
            captured.clear()
            model(input_ids=ids, attention_mask=mask)
            keep = mask.bool() & (ids != tokenizer.bos_token_id)
            rows.append(captured[0][keep])
    finally:
        handle.remove()
    return torch.cat(rows)


def _train_sae(model, tokenizer, examples, size: BuildSize, world: DemoWorld, progress: bool) -> dict:
    """Train a TopK SAE with sae-lens's training step on cached activations; save and evaluate.

    sae-lens's ``SAETrainer.step`` (its own optimiser, schedule, dead-latent tracking and TopK
    auxiliary loss) is driven from in-memory activations: the demo model is no TransformerLens
    model, and its whole activation set fits in memory.
    """
    from sae_lens import SAE
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    acts = _residual_activations(model, tokenizer, examples, size.layer)
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
    acts = acts[torch.randperm(len(acts), generator=generator)]
    n_eval = max(len(acts) // 10, 1)
    eval_acts, train_acts = acts[:n_eval], acts[n_eval:]

    cfg = TopKTrainingSAEConfig(
        d_in=size.hidden_size,
        d_sae=size.hidden_size * size.sae_expansion,
        k=size.sae_k,
        apply_b_dec_to_input=True,
    )
    cfg.metadata.model_name = DEMO_MODEL_NAME
    cfg.metadata.hook_name = world.hook_name
    cfg.metadata.context_size = _MAX_POSITIONS
    cfg.metadata.prepend_bos = True
    sae = TopKTrainingSAE(cfg)
    with torch.no_grad():  # start the decoder bias at the mean, a common and cheap head start
        sae.b_dec.copy_(train_acts.mean(0))
    steps = size.sae_training_samples // size.sae_batch
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * size.sae_batch,
        train_batch_size_samples=size.sae_batch,
        lr=size.sae_lr,
        lr_end=size.sae_lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=max(1, steps // 20),
        lr_decay_steps=steps - max(1, steps // 20),
        dead_feature_window=max(50, steps // 10),
        feature_sampling_window=max(100, steps),
        logger=LoggingConfig(log_to_wandb=False),
    )

    def batches():
        while True:
            order = torch.randperm(len(train_acts), generator=generator)
            for start in range(0, len(order) - size.sae_batch + 1, size.sae_batch):
                yield train_acts[order[start : start + size.sae_batch]]

    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches())
    bar = tqdm(range(steps), desc="training demo SAE", disable=not progress, leave=False)
    for step in bar:
        trainer.maybe_reset_sparsity()
        out = trainer.step(next(trainer.data_provider))
        trainer.n_training_steps += 1
        if step % 50 == 0:
            bar.set_postfix(mse=f"{out.losses['mse_loss'].item():.3f}")
    trainer.set_final_sae_metadata()
    _save_inference_sae(sae, world.sae_dir)

    loaded = SAE.load_from_disk(world.sae_dir)
    with torch.no_grad():
        z = loaded.encode(eval_acts)
        recon = loaded.decode(z)
    residual = (eval_acts - recon).pow(2).sum()
    total = (eval_acts - eval_acts.mean(0)).pow(2).sum()
    fired = (z > 0).any(0)
    return {
        "architecture": loaded.cfg.architecture(),
        "d_in": loaded.cfg.d_in,
        "d_sae": loaded.cfg.d_sae,
        "k": size.sae_k,
        "training_tokens": len(train_acts),
        "training_steps": steps,
        "eval_tokens": len(eval_acts),
        "variance_explained": round(1 - (residual / total).item(), 4),
        "mean_l0": round((z > 0).sum(-1).float().mean().item(), 2),
        "dead_share": round(1 - fired.float().mean().item(), 4),
    }


def _save_inference_sae(sae, folder: Path) -> None:
    """Save the SAE in sae-lens's inference form with ``save_model``.

    Training rescales TopK pre-activations by the decoder norms; saving folds those norms into
    the weights, after which the rescaling is the identity. It is switched off in the saved
    config so that ``decode(z) = z @ W_dec + b_dec`` holds exactly, as the sparse steering
    identity of the method (docs/method.md §2) assumes.
    """
    from sae_lens import SAE

    state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    sae.process_state_dict_for_saving_inference(state)
    cfg = sae.cfg.get_inference_sae_cfg_dict()
    cfg["rescale_acts_by_decoder_norm"] = False
    inference = SAE.from_dict(cfg)
    inference.load_state_dict(state)
    inference.save_model(folder)


# --- tasks -----------------------------------------------------------------------------------


@torch.no_grad()
def greedy_answers(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 64, progress=None) -> list[str]:
    """The model's greedy answer to each user prompt (chat template, left padding).

    Batches are sliced at the padded prompt length, not at each row's own length (pitfall 3 of
    docs/method.md §4). Identical prompts are answered once.
    """
    unique = sorted(set(prompts), key=lambda p: (len(p), p))
    answers: dict[str, str] = {}
    tokenizer.padding_side = "left"
    for start in range(0, len(unique), batch_size):
        chunk = unique[start : start + batch_size]
        enc = tokenizer.apply_chat_template(
            [[{"role": "user", "content": p}] for p in chunk],
            add_generation_prompt=True,
            padding=True,
            return_tensors="pt",
            return_dict=True,
        )
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        width = enc["input_ids"].shape[1]
        for prompt, row in zip(chunk, out[:, width:]):
            answers[prompt] = tokenizer.decode(row, skip_special_tokens=True).strip()
        if progress is not None:
            progress.update(len(chunk))
    return [answers[p] for p in prompts]


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _culture_items(rng: random.Random, keys, n_rows: int) -> list[corpus.CultureItem]:
    """``n_rows`` items per country and localization status, each question at most once per
    country (so a split has that many distinct questions per country)."""
    items = []
    for country in corpus.COUNTRY_KEYS:
        for localized in (True, False):
            pool = [k for k in keys if k.localized == localized]
            for key in rng.sample(pool, min(n_rows, len(pool))):
                items.append(corpus.culture_item(key, country))
    return items


def _write_tasks(
    model, tokenizer, tasks_dir: Path, culture_train, culture_test, behaviour_splits,
    size: BuildSize, rng: random.Random, progress: bool,
) -> dict:
    """Write the task files, with the model's greedy answers as the rejected ones, and measure
    the unsteered model on the test splits."""
    culture = {
        "train": _culture_items(rng, culture_train, size.culture_rows),
        "test": _culture_items(rng, culture_test, max(1, size.culture_rows // 2)),
    }
    behaviours = {}
    for behaviour in corpus.BEHAVIOURS:
        train_keys, test_keys = behaviour_splits[behaviour.key]
        test = corpus.behaviour_rows(rng, behaviour, test_keys)
        behaviours[behaviour.key] = {
            "train": corpus.behaviour_rows(rng, behaviour, train_keys),
            "test": test,
            "test_infer": corpus.test_infer_rows(rng, test),
        }
    general = [{"prompt": q, "answer": a} for q, a, _ in corpus.general_facts()]
    texts = [{"text": corpus.text_document(rng)} for _ in range(max(4, size.culture_rows * 5))]

    prompts = {
        "mcq": ([it.mcq_prompt for items in culture.values() for it in items], 3),
        "open": ([it.question for items in culture.values() for it in items], 20),
        "behaviour_open": ([r["question"] for b in behaviours.values() for r in b["test"]], 20),
        "behaviour_ab": (
            [corpus.format_choices(r["question"], [r["A"], r["B"]]) for b in behaviours.values() for r in b["test_infer"]],
            3,
        ),
        "general": ([r["prompt"] for r in general], 6),
    }
    bar = tqdm(total=sum(len(set(p)) for p, _ in prompts.values()), desc="answering task prompts", disable=not progress, leave=False)
    answers = {
        name: dict(zip(texts_, greedy_answers(model, tokenizer, texts_, n, size.generation_batch, bar)))
        for name, (texts_, n) in prompts.items()
    }
    bar.close()

    rejected_mcq, rejected_open = f"rejected_{DEMO_MODEL_NAME}_mcq", f"rejected_{DEMO_MODEL_NAME}_open_ended"
    for split, items in culture.items():
        rows = [
            {
                "country": it.country,
                "localization_status": "localized" if it.localized else "nolocalized",
                "prompt-mcq": it.mcq_prompt,
                "chosen-mcq": it.mcq_answer,
                rejected_mcq: answers["mcq"][it.mcq_prompt],
                "prompt_open_ended": it.question,
                "chosen_open_ended": it.open_answer,
                rejected_open: answers["open"][it.question],
            }
            for it in items
        ]
        _write_jsonl(tasks_dir / "culture" / f"{split}.jsonl", rows)
    for key, splits in behaviours.items():
        for split, rows in splits.items():
            _write_jsonl(tasks_dir / "behaviour" / key / f"{split}.jsonl", rows)
    _write_jsonl(tasks_dir / "general" / "questions.jsonl", general)
    _write_jsonl(tasks_dir / "general" / "text.jsonl", texts)

    return {
        "culture": _culture_stats(culture, answers["mcq"], answers["open"]),
        "behaviour": _behaviour_stats(behaviours, answers["behaviour_open"], answers["behaviour_ab"]),
        "general": {"accuracy": _share(_contains_word(answers["general"][r["prompt"]], r["answer"]) for r in general)},
    }


def _share(flags) -> float | None:
    flags = list(flags)
    return round(sum(flags) / len(flags), 4) if flags else None


def _contains_word(text: str, word: str) -> bool:
    """Whether ``text`` contains ``word`` (or a phrase) as whole words, case ignored (open answers
    start capitalised)."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE) is not None


def _culture_stats(culture, mcq: dict[str, str], open_ended: dict[str, str]) -> dict:
    """Accuracy of the unsteered model, and how often it gives the default culture's answer."""
    default = corpus.DEFAULT_COUNTRY
    stats = {"rows": {split: len(items) for split, items in culture.items()}}
    test = culture["test"]
    localized = [it for it in test if it.localized]
    nolocalized = [it for it in test if not it.localized and it.country != default]
    stats["localized_mcq_accuracy"] = _share(mcq[it.mcq_prompt] == it.mcq_answer for it in localized)
    stats["localized_open_accuracy"] = _share(
        _contains_word(open_ended[it.question], corpus.answer_phrase(it.topic, it.country)) for it in localized
    )
    stats["nolocalized_mcq_accuracy"] = {
        c: _share(mcq[it.mcq_prompt] == it.mcq_answer for it in nolocalized if it.country == c)
        for c in corpus.COUNTRY_KEYS
        if c != default
    }
    stats["nolocalized_mcq_default_share"] = _share(
        mcq[it.mcq_prompt] == corpus.MCQ_LETTERS[it.option_countries.index(default)] for it in nolocalized
    )
    stats["nolocalized_open_default_share"] = _share(
        _contains_word(open_ended[it.question], corpus.answer_phrase(it.topic, default)) for it in nolocalized
    )
    stats["nolocalized_default_mcq_accuracy"] = _share(
        mcq[it.mcq_prompt] == it.mcq_answer for it in test if not it.localized and it.country == default
    )
    stats["rejected_equals_chosen_share"] = {
        split: _share(mcq[it.mcq_prompt] == it.mcq_answer for it in items) for split, items in culture.items()
    }
    return stats


def _behaviour_stats(behaviours, open_answers: dict[str, str], ab_answers: dict[str, str]) -> dict:
    """How often the unsteered model shows each behaviour on its test split (it should rarely)."""
    stats = {}
    for key, splits in behaviours.items():
        behaviour = next(b for b in corpus.BEHAVIOURS if b.key == key)
        stats[key] = {
            "rows": {split: len(rows) for split, rows in splits.items()},
            "matching_share_open": _share(open_answers[r["question"]] in behaviour.matching for r in splits["test"]),
            "matching_share_ab": _share(
                ab_answers[corpus.format_choices(r["question"], [r["A"], r["B"]])] == r["matching"]
                for r in splits["test_infer"]
            ),
        }
    return stats


def list_demo_tasks(world: DemoWorld) -> list[dict]:
    """The task files of ``world``: one culture task per country, one per behaviour, general.

    Culture tasks of all countries share one table per split (as in Deep-Culture-Lense); select
    a task's rows with ``country``. The default culture's non-localized rows mostly have
    ``rejected == chosen`` (the model already answers that way), which ``is_default`` flags.
    """
    tasks = []
    culture = world.tasks_dir / "culture"
    for country in corpus.COUNTRY_KEYS:
        tasks.append(
            {
                "name": f"culture-{country}",
                "kind": "culture",
                "country": country,
                "is_default": country == corpus.DEFAULT_COUNTRY,
                "format": "deep-culture-lense",
                "paths": {"train": culture / "train.jsonl", "test": culture / "test.jsonl"},
            }
        )
    for behaviour in corpus.BEHAVIOURS:
        folder = world.tasks_dir / "behaviour" / behaviour.key
        tasks.append(
            {
                "name": behaviour.key,
                "kind": "behaviour",
                "country": None,
                "is_default": False,
                "format": "bipo",
                "paths": {split: folder / f"{split}.jsonl" for split in ("train", "test", "test_infer")},
            }
        )
    general = world.tasks_dir / "general"
    tasks.append(
        {
            "name": "general",
            "kind": "general",
            "country": None,
            "is_default": False,
            "format": "general",
            "paths": {"questions": general / "questions.jsonl", "text": general / "text.jsonl"},
        }
    )
    return tasks


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yapo demo", description="Build or inspect the built-in demo world (a tiny model, SAE and tasks)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("build", "build the demo world, or reuse a finished one"), ("info", "show a built world's paths and stats")):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--seed", type=int, default=0, help="the world's seed (default 0)")
        cmd.add_argument("--size", choices=SIZES, default="full", help="full (minutes) or mini (seconds, for tests)")
        cmd.add_argument("--cache-dir", default=None, help="folder of the world (default: under $YAPO_CACHE_DIR)")
        if name == "build":
            cmd.add_argument("--force", action="store_true", help="rebuild even if a finished world exists")
            cmd.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _summary(world: DemoWorld) -> str:
    s = world.stats
    culture, sae = s["culture"], s["sae"]
    nolocal = culture["nolocalized_mcq_accuracy"]
    lines = [
        f"demo world  {world.root}",
        f"  model     {world.model_dir}  ({s['model']['parameters']:,} parameters, {s['model']['num_layers']} layers)",
        f"  SAE       {world.sae_dir}  ({sae['architecture']}, {sae['d_sae']} latents, {world.hook_name})",
        f"  tasks     {world.tasks_dir}",
        f"  built in {s['build_seconds']} s, {s['file_bytes']['total'] / 1e6:.1f} MB",
        f"  SAE variance explained {sae['variance_explained']}, mean L0 {sae['mean_l0']}, dead {sae['dead_share']:.1%}",
        f"  localized MCQ accuracy {culture['localized_mcq_accuracy']:.1%}",
        f"  non-localized MCQ accuracy (default {s['default_country']} picked "
        f"{culture['nolocalized_mcq_default_share']:.1%}): "
        + ", ".join(f"{c} {a:.0%}" for c, a in nolocal.items() if a is not None),
        "  behaviours (matching share, A/B): "
        + ", ".join(f"{k} {v['matching_share_ab']:.0%}" for k, v in s["behaviour"].items()),
        f"  general questions accuracy {s['general']['accuracy']:.1%}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``demo build`` / ``demo info``; ``argv`` excludes the ``demo`` word itself."""
    args = _parser().parse_args(argv)
    if args.command == "build":
        world = build_demo_world(args.cache_dir, seed=args.seed, size=args.size, force=args.force, progress=not args.quiet)
        print(_summary(world))
        return 0
    world = load_demo_world(args.cache_dir, seed=args.seed, size=args.size)
    if world is None:
        where = args.cache_dir or default_cache_dir(args.seed, args.size)
        print(f"no finished demo world at {where}; build it with: yapo demo build --seed {args.seed} --size {args.size}", file=sys.stderr)
        return 1
    print(_summary(world))
    for task in list_demo_tasks(world):
        print(f"  task {task['name']:<16} {task['kind']:<10} " + "  ".join(f"{k}={v}" for k, v in task["paths"].items()))
    return 0
