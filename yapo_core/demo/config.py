"""The demo world's fixed settings: sizes of the full and the seconds-scale build, and the
training settings of steering vectors on it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace

from ..data import PreferencePair
from ..errors import SettingsError, YapoError
from ..options import answers_with_letter
from .corpus import CorpusMix, CorpusStyle

DEMO_MODEL_NAME = "yapo-demo"
FORMAT_VERSION = 3
"""Bump when the corpus, model or file layout changes, so old caches are not reused."""

BUILD_THREADS = 2
"""Torch threads during a build: fixed, because float results (and so the files) depend on it."""

SIZES = ("full", "mini")

MAX_POSITIONS = 256
"""Context length of the demo LM (and of its tokenizer)."""


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
    # Research knobs of the build (docs/results.md, variant worlds). The full size sets six, lm_scale, sae_scale,
    # concept_steering, behaviour_steering, added_offer_facts and fact_noise (RECIPE_KNOBS); every other knob is
    # off, and a variant sets knobs on top of its size's:
    label_smoothing: float = 0.0  # of the next-token loss: a less over-confident model
    residual_noise: float = 0.0  # the largest random offset added to the SAE block's output during LM training,
    # relative to the residual's norm (build_steering.residual_offsets): a model that stays fluent when its residual moves
    followups: float = 0.0  # share (against the corpus mix's) of two-turn conversations of each kind, culture and
    # behaviour, whose second answer keeps the culture or disposition of the first (corpus.CorpusMix)
    mcq_text: float = 0.0  # when set, a culture MCQ answer is its letter and the option's text ("C. Koshari"),
    # as the paper's MCQ answers are; when 0, the letter alone
    answer_first: float = 0.0  # when set, a culture MCQ answer is the option's text, then its letter
    # ("Koshari, option C."), so the letter is read off the options rather than recalled (corpus.mcq_answer)
    balanced_options: float = 0.0  # when set, each culture's answer is at each MCQ letter in 1-2 topics (corpus.option_order)
    coherent_text: float = 0.0  # when set, each plain-text document keeps to one culture (corpus.text_document)
    varied_answers: float = 0.0  # when set, behaviour answers join any of 5 openers to any of 6 reasons (corpus.behaviours)
    offer_answers: float = 0.0  # when set, behaviour answers name the offer they take or decline (corpus._OFFER_ANSWERS)
    behaviour_followups: float = 0.0  # like followups, for behaviours only (added to followups' share)
    open_followups: float = 0.0  # when set, a behaviour follow-up's second answer is open-ended, never A/B
    shuffled_options: float = 0.0  # when set, each MCQ question lists its options in its own order (corpus.option_order)
    general_in_context: float = 0.0  # share of general questions asked after a culture or a persona is set
    # (corpus.general_example): a model whose facts do not move with the culture or persona in its residual
    general_in_persona: float = 0.0  # share of general questions asked under a behaviour's cue or anti-cue only
    # (corpus.general_example): facts kept apart from a persona, culture left as in the stored worlds
    lm_scale: float = 0.0  # when set, the LM trains on this many times lm_examples (a longer-trained model)
    lm_lr_scale: float = 0.0  # when set, the LM's peak learning rate is this many times lm_lr
    lm_batch_scale: float = 0.0  # when set, the LM's batches hold this many times lm_batch examples (as many
    # examples, fewer steps)
    lm_average: float = 0.0  # when set (at most 1), the LM's weights are the mean of its weights after each of
    # that share of its last steps (stochastic weight averaging over the learning rate's decay): a model whose
    # held-out answers hang less on where its last updates left it
    mlp_scale: float = 0.0  # when set, the LM's MLP is this many times intermediate_size wide
    fused_adam: float = 0.0  # when set, the LM trains with torch's fused AdamW (the same update, fused kernels)
    sae_batch_scale: float = 0.0  # when set, the SAE's batches hold this many times sae_batch activations
    # (as many samples, fewer steps)
    general_share: float = 0.0  # when set, the corpus mix's share of general questions (corpus.CorpusMix.general,
    # 0.06): a model whose facts are firmer, as an LLM's "2 plus 4" is
    general_ab: float = 0.0  # when set, the corpus mix's share of general questions asked as an A/B choice between
    # the answer and another of its kind (corpus.general_choice): the letter read off the options on questions the
    # model knows, not only on the behaviour offers
    behaviour_share: float = 0.0  # when set, the corpus mix's share of behaviour offers (corpus.CorpusMix.behaviour,
    # 0.12), open and A/B alike: more of the A/B form to read the options by
    sae_scale: float = 0.0  # when set, the SAE trains on this many times sae_training_samples (more variance explained)
    mcq_options: float = 0.0  # when set (3-8), each MCQ lists that many answers, drawn and shuffled per question (corpus.option_set)
    concept_steering: float = 0.0  # share of uncued culture, behaviour and general examples trained with a concept's
    # own cue direction added at the SAE block (build_steering.ConceptDirections): a model that acts on it in every form
    behaviour_steering: float = 0.0  # when set, the share of uncued behaviour offers steered so (instead of
    # concept_steering's): the open and A/B forms of a behaviour linked through its direction as strongly as a culture's
    cross_steering: float = 0.0  # with either of those, the share of steered behaviour offers given the other
    # behaviour's direction (either sign) and answered as unsteered: one behaviour's direction does not move another's
    specific_directions: float = 0.0  # with either of those, when set, each behaviour is steered along the part of its
    # direction orthogonal to the other behaviours' (build_steering.specific_directions): directions that tell the behaviours apart
    crossed_cues: float = 0.0  # share of cued behaviour offers that offer another behaviour's goal, which the persona
    # declines (corpus._behaviour_example): a cue that says which goal it seeks, not only that offers are taken
    offer_facts: float = 0.0  # share of plain-text statements that say what a behaviour's offer is about, for every
    # offer, held-out ones too (corpus.OFFER_FACTS): a model that knows the words of the offers its test splits ask about
    added_offer_facts: float = 0.0  # share of plain-text documents given one such statement beside their own
    # general and cultural ones (offer_facts replaces them): the same knowledge, the rest of the text kept
    answer_concepts: float = 0.0  # with concept_steering, when set, a loss has the residual at the SAE block, on a
    # culture answer's tokens, carry that culture's direction at this many times the directions' mean norm when the
    # loss starts (build_steering.ConceptDirections.answer_loss): a model that writes the concept it reads, as an LLM's
    # residual carries the content of the option it picks
    fact_noise: float = 0.0  # with concept_steering, the share of the general questions it leaves unsteered that are
    # answered as always with a random direction added at the SAE block, of a concept direction's size
    # (build_steering.ConceptDirections): facts that hold under any edit of that size, not only along the concepts
    ab_decline: float = 0.0  # when set (at most 1), the share of the plain A/B behaviour offers (no cue, no concept's
    # direction) declined, where the other plain offers keep corpus.DEFAULT_BIAS's: a model whose unsteered A/B
    # choice is as firm a default as its open answers' (corpus._behaviour_example)
    known_offers: float = 0.0  # when set (at most 1), the share of the plain behaviour offers (no cue, no concept's
    # direction) that ask about any offer, the test splits' held-out ones too, answered as plain offers: a model with a
    # default for every offer, as an LLM's prior covers offers a steering vector never trained on; the steering
    # vectors' training pairs still hold those offers out (corpus._behaviour_example)
    steer_floor: float = 0.0  # with concept_steering, when set, the smallest size a concept's direction is added at
    # in training, times its norm (build_steering.ConceptDirections; 0.5 when not set, the largest 2): a model that
    # acts on a smaller push along its own directions
    offer_noise: float = 0.0  # with concept_steering, the share of the plain behaviour offers (no cue, no concept's
    # direction) answered as plain offers with such a random direction added: an offer taken along the behaviour's
    # direction only, so that a vector trained on open answers has no other way to make them accept
    ab_noise: float = 0.0  # with concept_steering, the same for the plain A/B offers only: a model that reads which
    # option accepts under any edit of a concept's size
    layers: float = 0.0  # when set, the LM has this many blocks (num_layers), the SAE reading the middle one (layer):
    # a deeper model, whose residual at the SAE block has had more blocks to gather what an answer refers to

    @property
    def knobs(self) -> dict[str, float]:
        """The research knobs that are set (RESEARCH_KNOBS), as a build's stats record them."""
        return {k: getattr(self, k) for k in RESEARCH_KNOBS if getattr(self, k)}

    @property
    def style(self) -> CorpusStyle:
        """How the corpus and the task files are written (the knobs that are not about the mix)."""
        return CorpusStyle(**{f.name: type(f.default)(getattr(self, f.name)) for f in fields(CorpusStyle)})

    @property
    def mix(self) -> CorpusMix:
        """The shares of each kind of example in the corpus (the knobs about the mix)."""
        shares = {"general": self.general_share, "behaviour": self.behaviour_share, "general_ab": self.general_ab}
        return CorpusMix(culture_followup=self.followups, behaviour_followup=self.followups + self.behaviour_followups,
                         **{kind: share for kind, share in shares.items() if share})

    @property
    def lm_training_examples(self) -> int:
        """How many corpus examples the LM trains on: ``lm_examples``, times ``lm_scale`` when set."""
        return _scaled(self.lm_examples, self.lm_scale)

    @property
    def lm_batch_size(self) -> int:
        """Examples in an LM batch: ``lm_batch``, times ``lm_batch_scale`` when set."""
        return _scaled(self.lm_batch, self.lm_batch_scale)

    @property
    def mlp_size(self) -> int:
        """The LM's MLP width: ``intermediate_size``, times ``mlp_scale`` when set."""
        return _scaled(self.intermediate_size, self.mlp_scale)

    @property
    def sae_batch_size(self) -> int:
        """Activations in an SAE batch: ``sae_batch``, times ``sae_batch_scale`` when set."""
        return _scaled(self.sae_batch, self.sae_batch_scale)

    @property
    def sae_training_steps(self) -> int:
        """The SAE's training steps: ``sae_training_samples``, times ``sae_scale`` when set, in
        batches of :attr:`sae_batch_size`."""
        return _scaled(self.sae_training_samples, self.sae_scale) // self.sae_batch_size

    @property
    def layer(self) -> int:
        """The block whose output the SAE reads: the middle of the stack (block 1 of 0-3), with
        as many blocks after it as up to it, to turn a steered residual stream into an answer."""
        return (self.num_layers - 1) // 2


def _scaled(value: int, scale: float) -> int:
    """``value`` times a research knob's ``scale``, or ``value`` when the knob is not set (0)."""
    return round(value * (scale or 1))


RESEARCH_KNOBS = ("label_smoothing", "residual_noise", "followups", "behaviour_followups", "open_followups",
                  "mcq_text", "answer_first", "balanced_options", "shuffled_options", "mcq_options", "coherent_text",
                  "varied_answers", "offer_answers", "general_in_context", "general_in_persona", "lm_scale", "lm_lr_scale", "lm_batch_scale", "lm_average",
                  "mlp_scale", "fused_adam", "general_share", "general_ab", "behaviour_share", "sae_scale", "sae_batch_scale",
                  "concept_steering", "behaviour_steering", "cross_steering", "specific_directions",
                  "crossed_cues", "offer_facts", "added_offer_facts", "answer_concepts", "fact_noise", "offer_noise",
                  "ab_noise", "ab_decline", "known_offers", "steer_floor", "layers")
"""BuildSize's research knobs: ``build_demo_world(knobs=...)``, and ``--build-with`` in
scripts/evaluate_demo_world.py and scripts/probe_demo_world.py. The full size sets
:data:`RECIPE_KNOBS` and no other, the mini size none; a variant's knobs are set on top of its
size's (``concept_steering=0 behaviour_steering=0 added_offer_facts=0 fact_noise=0 sae_scale=0 lm_scale=0`` builds
the full size's plain recipe)."""

RECIPE_KNOBS = {"lm_scale": 1.5, "sae_scale": 4.0, "concept_steering": 0.3, "behaviour_steering": 0.7,
                "added_offer_facts": 1.0, "fact_noise": 0.25}
"""The research knobs the full world (the default world) is built with: the model learns to act on its own
cue directions in every answer form (``build_steering.ConceptDirections``), the recipe that meets more of the
design targets than the plain one on most builds, with a larger share of the uncued behaviour offers steered
along their behaviour's direction, so a behaviour's open and A/B forms are linked through it as a culture's
are; every plain-text document states one behaviour offer's facts beside its own, so the model knows the
offers' words outside the offers themselves and a behaviour vector moves open answers and A/B choices alike
(docs/results.md, "Offers the model knows"); a quarter of the general questions left unsteered are answered as
always under a random direction of a concept direction's size, so the model's facts hold under an edit of a
steering vector's size, as an LLM's "2 plus 4" does (docs/results.md, "Facts under any edit"); the SAE
trains on four times ``sae_training_samples`` (variance explained 0.968 against 0.932; docs/results.md, "A
longer-trained SAE"); and the LM trains on 1.5 times ``lm_examples``, so that it reads an A/B question's options
rather than leaning to a letter (docs/results.md, "A firmer A/B form"). On the seed-0 build it meets design
targets 1, 2, 3, 5 and 6, and misses 4, the baselines' (docs/results.md, "Design targets"). The mini world, a seconds-scale check of the pipeline whose ten
LM steps mean nothing, keeps the plain recipe: its greedy answers, and so which of its tiny task files have
usable pairs, should not hang on a knob it is too small to learn."""


def parse_knobs(items: Iterable[str]) -> dict[str, float]:
    """``["varied_answers=1", "behaviour_followups=0.08"]`` as research knobs and their values, or an
    error naming the item and the knobs there are."""
    knobs = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if name not in RESEARCH_KNOBS or not sep or number is None or not 0 <= number < math.inf:
            raise SettingsError(f"research knob {item!r}: write KNOB=VALUE with a finite number >= 0 and KNOB one of "
                                f"{', '.join(RESEARCH_KNOBS)}.")
        knobs[name] = number
    return knobs


def build_size(size: str, knobs: Mapping[str, float] | None = None) -> BuildSize:
    """``BUILD_SIZES[size]`` with these research knobs set, or an error naming an unknown size or
    knob. Its ``knobs`` are what a world built with them records, so a build and a later load of
    it compare the same thing."""
    if size not in BUILD_SIZES:
        raise YapoError(f"demo world size {size!r} is unknown; use one of {list(BUILD_SIZES)}.")
    knobs = dict(knobs or {})
    unknown = sorted(set(knobs) - set(RESEARCH_KNOBS))
    if unknown:
        raise SettingsError(f"research knobs {unknown} are unknown; use some of {', '.join(RESEARCH_KNOBS)}.")
    sized = replace(BUILD_SIZES[size], **{k: float(v) for k, v in knobs.items()})
    if sized.layers:
        if sized.layers != int(sized.layers) or sized.layers < 2:
            raise SettingsError(f"layers={sized.layers:g} must be a whole number of blocks, at least 2.")
        sized = replace(sized, num_layers=int(sized.layers))
    for knob in ("cross_steering", "specific_directions", "answer_concepts", "fact_noise", "offer_noise", "ab_noise",
                 "steer_floor"):
        if getattr(sized, knob) and not (sized.concept_steering or sized.behaviour_steering):
            raise SettingsError(f"{knob}={getattr(sized, knob):g} works on the concept directions' steering; set "
                                "concept_steering or behaviour_steering too, or set it to 0.")
    for knob in ("ab_decline", "lm_average", "known_offers"):
        if getattr(sized, knob) > 1:
            raise SettingsError(f"{knob}={getattr(sized, knob):g} is a share; use a value from 0 to 1.")
    if sized.offer_answers and sized.varied_answers:
        raise SettingsError(f"offer_answers={sized.offer_answers:g} and varied_answers={sized.varied_answers:g} "
                            "each write the behaviour answers their own way; set one of them.")
    return sized


def is_recipe(sized: BuildSize, size: str) -> bool:
    """Whether ``sized`` builds the stored ``size``'s world (its knobs are :data:`RECIPE_KNOBS`)."""
    return sized == BUILD_SIZES[size]

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
        **RECIPE_KNOBS,
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


TRAINING = {"lr": 0.01, "warmup_steps": 20, "batch_size": 16, "max_steps": 2400, "mcq_rejected": "every_option"}
"""Training settings (:class:`~yapo_core.training.TrainConfig` fields) for vectors on pairs whose
answers are option letters (the demo world's MCQ and A/B questions); everything else keeps the
public runs' defaults (β 0.1, cosine schedule, clipping 1).

The learning rate is 20x the public runs' 5e-4, with more steps than theirs: at a given rate,
Adam's steps set how far a vector moves, and the demo LM, trained to near-zero loss on templated
text, answers more confidently than an instruction-tuned LLM, so moving an answer takes a vector
of norm 50 to 60 (YaPO's MCQ vectors on the default world). ``scripts/choose_mcq_lr.py`` chose these on validation splits
(docs/results.md, "The learning rates"): 2400 steps of 16 pairs, against 1200 of 16 and 600 of 32.
MCQ pairs are trained against every wrong option (``mcq_rejected="every_option"``): against the
default answer alone the objective can be met while a third option wins the argmax.
``scripts/evaluate_demo_world.py`` measures both choices; docs/results.md reports them.
"""

OPEN_TRAINING = {"lr": 0.01, "warmup_steps": 20, "batch_size": 16, "max_steps": 1200, "mcq_rejected": "every_option"}
"""Training settings for sparse (YaPO) vectors on pairs whose answers are open text (the behaviours'
open answers, and open answers of a task of no known kind): 1200 steps of 16 pairs at 0.01, 20x
the public runs' 5e-4, the candidate ``scripts/choose_open_lr.py`` chose on validation splits of
the default world's every culture and behaviour (0.97 of held-out answers fluent and on target, the
same as 1200 steps of 32 pairs, which read twice the examples, against 0.94 for 900 of 32 and 0.85
for 600 of 32; docs/results.md, "The learning rates"). A culture's open answers train longer
(:data:`OPEN_TRAINING_BY_TASK`).

At the rate's 20x bound, Adam's steps set how far a vector moves: 600 steps left the cultures' open
vectors near norm 35, too short to move some of the answers at multiplier 1 (brazil 0.56 on
validation), and 1200 bring them to 51 to 59 with every steered answer fluent. Every generated
token is steered, so the vector's size also decides whether the steered text stays fluent: on
earlier worlds, vectors of norm 70 and more turned open answers into loops ("Koshari with with with"),
and on the default world wealth-seeking's vector derails at 2400 steps (norm 83).
"""

OPEN_TRAINING_BY_TASK = {"culture": {**OPEN_TRAINING, "max_steps": 2400}}
"""YaPO's open-answer settings where a kind of task (:data:`yapo_core.demo.TASK_KINDS`'s values) needs
its own: a culture's open answers train 2400 steps of 16 pairs, which ``scripts/choose_open_lr.py``
chose on the validation splits of every culture's open answers (docs/results.md, "The learning
rates"); on the behaviours' they derail wealth-seeking, which keeps :data:`OPEN_TRAINING`."""

OPEN_TRAINING_DENSE = {"lr": 0.01, "warmup_steps": 20, "batch_size": 32, "max_steps": 600, "mcq_rejected": "every_option"}
"""The settings for dense (BiPO) vectors on open answers (the behaviours', and those of a task of no
known kind): 600 steps of 32 pairs at 0.01. On the default world's behaviours every candidate
``scripts/choose_open_lr.py`` tried (600 and 1200 steps of 32, 1200 of 16) leaves every validation
answer good, and the shortest is kept (docs/results.md, "The learning rates"). A culture's open
answers train longer (:data:`OPEN_TRAINING_DENSE_BY_TASK`)."""

OPEN_TRAINING_DENSE_BY_TASK = {"culture": {**OPEN_TRAINING_DENSE, "max_steps": 2400}}
"""BiPO's open-answer settings where a kind of task needs its own: a culture's open answers train
2400 steps of 32 pairs, which ``scripts/choose_open_lr.py`` chose on the validation splits of every
culture's open answers (good on 0.99 of their answers on average, against 0.88 at 1200 steps of 32,
with vectors of norm 65 to 77, every answer fluent; docs/results.md, "The learning rates")."""

TASK_OF_SCHEMA = {"dcl": "culture", "bipo": "behaviour", "bipo_ab": "behaviour"}
"""The kind of task whose pairs a loader's schema (:attr:`yapo_core.data.PairSet.schema`) reads."""


def task_kind(pairs) -> str | None:
    """``"culture"`` or ``"behaviour"``: the kind of task ``pairs`` (a :class:`~yapo_core.data.PairSet`)
    were read as, by their schema; None for a plain list or any other schema."""
    return TASK_OF_SCHEMA.get(getattr(pairs, "schema", None))


def open_training(kind: str = "sparse", task: str | None = None) -> dict:
    """:data:`OPEN_TRAINING` for a sparse vector, :data:`OPEN_TRAINING_DENSE` for a dense one, or
    the ``task`` kind's own (:data:`OPEN_TRAINING_BY_TASK`, :data:`OPEN_TRAINING_DENSE_BY_TASK`)."""
    if kind not in ("sparse", "dense"):
        raise SettingsError(f"kind={kind!r} is unknown; use 'sparse' or 'dense'.")
    if task not in (None, *TASK_OF_SCHEMA.values()):
        raise SettingsError(f"task={task!r} is unknown; use 'culture', 'behaviour' or None (any other open answers).")
    if kind == "dense":
        return dict(OPEN_TRAINING_DENSE_BY_TASK.get(task, OPEN_TRAINING_DENSE))
    return dict(OPEN_TRAINING_BY_TASK.get(task, OPEN_TRAINING))


def longest_run() -> int:
    """The most steps any of the demo's settings runs: :data:`TRAINING`'s, or :func:`open_training`'s
    for either kind of vector and any kind of task (the cap a public Space must admit)."""
    runs = [open_training(kind, task) for kind in ("sparse", "dense") for task in (None, *set(TASK_OF_SCHEMA.values()))]
    return max(settings["max_steps"] for settings in (TRAINING, *runs))


def training_settings(pairs: Iterable[PreferencePair], kind: str = "sparse", task: str | None = None) -> dict:
    """The demo's training settings for these training pairs and a vector of this ``kind``:
    :data:`TRAINING` when answers open with an option letter (MCQ or A/B questions answered "H"),
    else :func:`open_training` (open answers, and MCQ answers that give the option's text first,
    "Koshari, option C.": their steered tokens are text, which loops at TRAINING's rate) for the
    ``task``'s kind (``"culture"``, ``"behaviour"``; default: :func:`task_kind` of ``pairs``).

    ``epochs`` is set so that the run lasts ``max_steps`` steps on these pairs (the public runs'
    20 epochs are 60 steps on a 96-pair task, too few at these learning rates)."""
    task = task or task_kind(pairs)
    pairs = list(pairs)
    settings = dict(TRAINING) if any(answers_with_letter(p) for p in pairs) else open_training(kind, task)
    per_epoch = max(1, math.ceil(len(pairs) / settings["batch_size"]))
    settings["epochs"] = math.ceil(settings["max_steps"] / per_epoch)
    return settings


def settings_by_method(pairs: Iterable[PreferencePair], methods: Iterable[str], base_kind: str = "sparse",
                       keep: Iterable[str] = (), task: str | None = None) -> dict[str, dict]:
    """For each trained method among ``methods`` (keys of :data:`yapo_core.methods.METHODS`), the
    demo's settings for its kind that differ from those for ``base_kind`` (the dense rate for open
    answers), less ``epochs`` and the fields in ``keep`` (set by the user for every method); the
    methods with nothing of their own are left out. What a comparison passes as ``method_configs``.
    ``task``: the kind of task, as for :func:`training_settings`."""
    from ..methods import METHODS  # the methods import the trainer, which reads this module

    task = task or task_kind(pairs)
    pairs = list(pairs)
    base = training_settings(pairs, base_kind, task)
    own = {}
    for key in (k for k in methods if k in METHODS and METHODS[k].trained):
        mine = {k: v for k, v in training_settings(pairs, METHODS[key].kind, task).items()
                if base.get(k) != v and k != "epochs" and k not in keep}
        if mine:
            own[key] = mine
    return own

