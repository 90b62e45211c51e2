"""Reading a steering vector through its SAE: which latents it uses and what each one does.

Everything the app's Features page shows is computed here and returned as plain dataclasses, so
a notebook or script gets the same cards:

- :func:`top_latents`: the entries of a sparse vector with the largest ``|v|``, signed;
- :func:`logit_lens`: the tokens a residual direction promotes and suppresses, read through the
  model's own final norm and unembedding;
- :func:`latent_activity`: where latents fire on given texts (top-activating tokens with
  per-token values, activation density, a histogram of non-zero activations);
- :func:`nearest_latents`: SAE latents whose decoder rows point along a (dense) direction;
- a card's Neuronpedia link (:mod:`.neuronpedia`);
- :func:`vector_card` and :func:`feature_report`: the whole vector, and one card per latent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from .architectures import capped_length, unembed
from .data import PreferencePair
from .encoding import has_chat_template, render_answer, render_prompt
from .errors import SAELoadError, SettingsError
from .hooks import record_residual
from .models import model_device
from .neuronpedia import neuronpedia_url
from .saes import SAESource, check_sae_fits, decoder_is_linear, decoder_matrix, sae_input, sae_source
from .steering import SteeringVector, dense_equivalent

# --- which latents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentWeight:
    """One entry of a sparse vector: SAE latent ``index`` and its value in ``v``."""

    index: int
    value: float


def top_latents(vector: SteeringVector, k: int = 20) -> list[LatentWeight]:
    """The ``k`` non-zero entries of a sparse vector with the largest ``|v|``, largest first."""
    if vector.kind != "sparse":
        raise SettingsError("top_latents needs a sparse (SAE-space) vector; for a dense one use nearest_latents.")
    values = vector.values
    nonzero = int((values != 0).sum())
    if nonzero == 0 or k <= 0:
        return []
    order = values.abs().topk(min(k, nonzero)).indices.tolist()
    return [LatentWeight(int(i), float(values[i])) for i in order]


@dataclass(frozen=True)
class LatentMatch:
    """An SAE latent whose decoder row points along a direction (signed cosine)."""

    index: int
    cosine: float


def decoder_rows(sae: nn.Module) -> torch.Tensor:
    """``W_dec`` (``d_sae × d_model``); only SAEs with a linear decoder have one row per latent."""
    if not decoder_is_linear(sae):
        raise SAELoadError("this SAE's decoder is not linear (it normalises or reshapes), so its latents have no single direction.")
    return decoder_matrix(sae).detach()


def nearest_latents(direction: torch.Tensor, sae: nn.Module, k: int = 10) -> list[LatentMatch]:
    """The ``k`` latents with the largest ``|cos(W_dec[i], direction)|``, signed.

    A negative cosine means the latent lies along the direction at a negative multiplier.
    """
    rows = decoder_rows(sae).float().cpu()
    d = direction.detach().float().cpu().flatten()
    if d.numel() != rows.shape[1]:
        raise SettingsError(f"the direction has {d.numel()} entries but the SAE's d_in is {rows.shape[1]}.")
    if float(d.norm()) == 0.0:
        return []
    cos = torch.nn.functional.cosine_similarity(rows, d.unsqueeze(0), dim=1)
    order = cos.abs().topk(min(k, cos.numel())).indices.tolist()
    return [LatentMatch(int(i), float(cos[i])) for i in order]


def decoded_direction(vector: SteeringVector, sae: nn.Module | None = None) -> torch.Tensor:
    """The vector as one residual-stream direction: ``v·W_dec`` for a sparse vector, ``v`` for a dense one.

    For a sparse vector this is the signed linear decoding (SAEDashboard's "vector set"); what the
    vector actually adds at a token also depends on which latents are active there (docs/method.md §2).
    """
    if vector.kind == "dense":
        return vector.values.detach().float().cpu()
    sae = sae if sae is not None else vector.sae
    if sae is None:
        raise SAELoadError("decoding a sparse vector needs its SAE.")
    rows = decoder_rows(sae)
    return (vector.values.to(rows.device, rows.dtype) @ rows).float().cpu()


# --- logit lens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenScore:
    token: str
    token_id: int
    score: float


@dataclass(frozen=True)
class LogitLens:
    """Tokens a direction promotes (``top``) and suppresses (``bottom``), strongest first."""

    top: list[TokenScore]
    bottom: list[TokenScore]


def token_text(tokenizer, token_id: int) -> str:
    """A token as the text it decodes to (byte-level markers such as ``Ġ`` resolved).

    A token that is only part of a multi-byte character decodes to U+FFFD on its own; its raw
    vocabulary entry is shown instead, so different tokens never look the same.
    """
    text = tokenizer.decode([int(token_id)], skip_special_tokens=False)
    if "\ufffd" in text:
        return str(tokenizer.convert_ids_to_tokens(int(token_id)))
    return text


@torch.no_grad()
def direction_logits(model: nn.Module, direction: torch.Tensor) -> torch.Tensor:
    """Logit change along ``direction``, through the final norm and the unembedding.

    Computed as ``unembed(d) − unembed(0)`` with ``d`` rescaled to unit RMS: the difference
    removes everything that does not depend on the direction (LayerNorm and LM-head biases), and
    the rescaling makes values comparable between directions (norms are scale-invariant, so the
    ranking does not depend on it). Soft-capping (Gemma-2) is monotone and keeps the ranking.
    """
    param = next(model.parameters())
    d = direction.detach().to(param.device, torch.float32).flatten()
    rms = d.pow(2).mean().sqrt()
    if float(rms) == 0.0:
        raise SettingsError("the direction is zero; it has no logit lens.")
    d = (d / rms).to(param.dtype)
    logits = unembed(model, d.unsqueeze(0)) - unembed(model, torch.zeros_like(d).unsqueeze(0))
    return logits[0].float().cpu()


def logit_lens(model: nn.Module, tokenizer, direction: torch.Tensor, k: int = 10) -> LogitLens:
    """The ``k`` tokens whose logits ``direction`` raises most and lowers most."""
    logits = direction_logits(model, direction)
    k = min(k, logits.numel())
    top, bottom = logits.topk(k), (-logits).topk(k)
    return LogitLens(
        top=[TokenScore(token_text(tokenizer, i), int(i), float(logits[i])) for i in top.indices.tolist()],
        bottom=[TokenScore(token_text(tokenizer, i), int(i), float(logits[i])) for i in bottom.indices.tolist()],
    )


# --- activations on texts ----------------------------------------------------------------------


@dataclass
class ActivationExample:
    """One text's tokens (a window around the peak) and a latent's value at each of them."""

    text_index: int
    tokens: list[str]
    values: list[float]
    peak: int  # position of the highest value within ``tokens``

    @property
    def max_value(self) -> float:
        return self.values[self.peak] if self.values else 0.0


@dataclass
class LatentActivity:
    """How one latent behaves on a set of texts."""

    index: int
    n_tokens: int
    density: float  # share of tokens where the latent is active (> 0)
    max_value: float
    mean_active: float  # mean activation where active
    examples: list[ActivationExample] = field(default_factory=list)
    histogram_counts: list[int] = field(default_factory=list)  # of the non-zero activations
    histogram_edges: list[float] = field(default_factory=list)


def dialogue_texts(tokenizer, pairs: Sequence[PreferencePair], with_answer: bool = True) -> list[str]:
    """What the model reads for each pair: the rendered prompt, followed by the chosen answer's
    assistant turn when ``with_answer`` (so latents that fire on answers are found too). Each text
    once, in order: pairs that differ only in their rejected answer (one per wrong option) read the
    same text, which would otherwise fill a latent's top examples with copies."""
    texts = {}
    for pair in pairs:
        text = render_prompt(tokenizer, pair.prompt, pair.system)
        if with_answer:
            text += render_answer(tokenizer, pair.prompt, pair.chosen, pair.system)
        texts.setdefault(text)
    return list(texts)


@torch.no_grad()
def sae_codes(
    model: nn.Module,
    tokenizer,
    sae: nn.Module,
    texts: Sequence[str],
    latents: Sequence[int],
    batch_size: int = 8,
    token_chunk: int = 256,
    max_length: int = 1024,
) -> list[tuple[list[int], torch.Tensor]]:
    """Per text, its token ids and the chosen ``latents``' activations at every token.

    Texts are tokenised as rendered (the chat template writes BOS itself). BOS positions are left
    out: their residual is huge and constant, and real SAEs are not trained on it. The SAE is
    run on at most ``token_chunk`` tokens at a time, so a 65k-wide code never exists for a
    whole batch at once. A text longer than ``max_length`` tokens (or the model's context) is read
    up to there.
    """
    point = check_sae_fits(model, sae)
    device = model_device(model)
    add_special = not has_chat_template(tokenizer)
    columns = torch.tensor(list(latents), dtype=torch.long)
    out: list[tuple[list[int], torch.Tensor]] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        # right-padded whatever the tokenizer's default, so that every text starts at position 0 (a
        # model with learned positions reads a left-padded text shifted), and cut at the model's context
        enc = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="right", truncation=True,
                        max_length=capped_length(model, max_length), add_special_tokens=add_special).to(device)
        with record_residual(model, point) as seen:
            model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], use_cache=False)
        hidden = seen[-1]
        for row in range(len(chunk)):
            keep = enc["attention_mask"][row].bool()
            if tokenizer.bos_token_id is not None:
                keep &= enc["input_ids"][row] != tokenizer.bos_token_id
            ids = enc["input_ids"][row][keep].tolist()
            out.append((ids, _encode_columns(sae, hidden[row][keep], columns, token_chunk)))
    return out


def _encode_columns(sae: nn.Module, h: torch.Tensor, columns: torch.Tensor, chunk: int) -> torch.Tensor:
    """``sae.encode(h)[:, columns]``, encoding at most ``chunk`` rows at a time."""
    parts = [sae.encode(sae_input(sae, h[i : i + chunk]))[:, columns.to(h.device)].float().cpu()
             for i in range(0, len(h), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, len(columns))


def latent_activity(
    model: nn.Module,
    tokenizer,
    sae: nn.Module,
    texts: Sequence[str],
    latents: Sequence[int],
    top_n: int = 3,
    window: int = 12,
    bins: int = 20,
    batch_size: int = 8,
) -> dict[int, LatentActivity]:
    """For each latent: density, maximum, top-``top_n`` texts (``window`` tokens either side of
    the peak, with per-token values) and a histogram of its non-zero activations."""
    latents = [int(i) for i in latents]
    if not latents:
        return {}
    codes = sae_codes(model, tokenizer, sae, texts, latents, batch_size=batch_size)
    n_tokens = sum(len(ids) for ids, _ in codes)
    result = {}
    for col, index in enumerate(latents):
        per_text = [values[:, col] for _, values in codes]
        everything = torch.cat(per_text) if per_text else torch.zeros(0)
        active = everything[everything > 0]
        peaks = [(float(v.max()) if len(v) else 0.0, t) for t, v in enumerate(per_text)]
        examples, shown = [], set()
        for value, t in sorted(peaks, key=lambda p: -p[0]):
            if value <= 0 or len(examples) == top_n:
                break
            ids, vals = codes[t][0], per_text[t]
            peak = int(vals.argmax())
            lo, hi = max(0, peak - window), min(len(ids), peak + window + 1)
            if tuple(ids[lo:hi]) in shown:  # texts that differ only outside the window read alike here: shown once
                continue
            shown.add(tuple(ids[lo:hi]))
            examples.append(
                ActivationExample(
                    text_index=t,
                    tokens=[token_text(tokenizer, i) for i in ids[lo:hi]],
                    values=[float(x) for x in vals[lo:hi]],
                    peak=peak - lo,
                )
            )
        counts, edges = [], []
        if len(active) and float(active.min()) == float(active.max()):  # one value: one bar, not a padded range
            counts, edges = [len(active)], [float(active.min())] * 2
        elif len(active):  # bins from the least to the largest value, the last one closed
            hist = torch.histogram(active, bins=bins)
            counts, edges = [int(c) for c in hist.hist], [float(e) for e in hist.bin_edges]
        result[index] = LatentActivity(
            index=index,
            n_tokens=n_tokens,
            density=len(active) / n_tokens if n_tokens else 0.0,
            max_value=float(everything.max()) if len(everything) else 0.0,
            mean_active=float(active.mean()) if len(active) else 0.0,
            examples=examples,
            histogram_counts=counts,
            histogram_edges=edges,
        )
    return result


# --- cards -------------------------------------------------------------------------------------


@dataclass
class LatentCard:
    """Everything shown for one latent. ``weight`` is its entry in a sparse vector, or its cosine
    with a dense vector (``weight_kind`` says which)."""

    index: int
    weight: float
    weight_kind: str  # "value" or "cosine"
    logit_lens: LogitLens
    activity: LatentActivity | None
    neuronpedia_url: str | None


@dataclass
class VectorCard:
    """The whole vector: size, sparsity, its decoded direction's logit lens, and how much of it a
    dense export keeps at multipliers +1 and −1."""

    kind: str
    method: str
    width: int
    l0: int
    norm: float
    top10_mass: float
    direction_norm: float  # |v·W_dec| (sparse) or |v| (dense)
    dropped_at_plus: float | None  # share dropped by a dense export at m=+1 (sparse only)
    dropped_at_minus: float | None  # the same at m=−1
    logit_lens: LogitLens
    nearest: list[LatentMatch] = field(default_factory=list)  # dense vectors with an SAE


def vector_card(vector: SteeringVector, model: nn.Module, tokenizer, sae: nn.Module | None = None, k: int = 10,
                nearest_k: int | None = None) -> VectorCard:
    """The vector's summary: ``k`` tokens each way in its logit lens, and for a dense vector with an
    SAE the ``nearest_k`` latents nearest by cosine (``k`` when not given)."""
    sae = sae if sae is not None else vector.sae
    direction = decoded_direction(vector, sae)
    plus = minus = None
    if vector.kind == "sparse":
        plus = dense_equivalent(vector, sae, 1.0)[1]
        minus = dense_equivalent(vector, sae, -1.0)[1]
    nearest = nearest_latents(direction, sae, nearest_k or k) if vector.kind == "dense" and sae is not None else []
    return VectorCard(
        kind=vector.kind,
        method=vector.method,
        width=vector.width,
        l0=vector.l0(),
        norm=vector.norm(),
        top10_mass=vector.top_mass(10),
        direction_norm=float(direction.norm()),
        dropped_at_plus=plus,
        dropped_at_minus=minus,
        logit_lens=logit_lens(model, tokenizer, direction, k) if float(direction.norm()) > 0 else LogitLens([], []),
        nearest=nearest,
    )


@dataclass
class FeatureReport:
    vector: VectorCard
    latents: list[LatentCard]
    n_texts: int
    neuronpedia_id: str | None = None  # the SAE's ``<model>/<sae-id>`` on Neuronpedia, if listed


def feature_report(
    vector: SteeringVector,
    model: nn.Module,
    tokenizer,
    sae: nn.Module | None = None,
    texts: Sequence[str] = (),
    k: int = 10,
    lens_k: int = 8,
    top_n: int = 3,
) -> FeatureReport:
    """The vector card and one card per latent: the top-``k`` latents by ``|v|`` of a sparse
    vector, or the ``k`` latents nearest by cosine to a dense one (when an SAE is given).

    ``texts`` (e.g. :func:`dialogue_texts` of the task's pairs) are where activations are read.
    """
    sae = sae if sae is not None else vector.sae
    card = vector_card(vector, model, tokenizer, sae, lens_k, nearest_k=k)
    if vector.kind == "sparse":
        picked = [(w.index, w.value, "value") for w in top_latents(vector, k)]
    else:
        picked = [(m.index, m.cosine, "cosine") for m in card.nearest[:k]]
    activity = latent_activity(model, tokenizer, sae, texts, [i for i, _, _ in picked], top_n=top_n) if picked and texts else {}
    rows = decoder_rows(sae) if picked else None
    source = sae_source(sae) if sae is not None else SAESource()
    if not source.neuronpedia_id and vector.sae_source.neuronpedia_id:
        source = vector.sae_source
    cards = [
        LatentCard(
            index=i,
            weight=w,
            weight_kind=kind,
            logit_lens=logit_lens(model, tokenizer, rows[i], lens_k),
            activity=activity.get(i),
            neuronpedia_url=neuronpedia_url(source, i),
        )
        for i, w, kind in picked
    ]
    return FeatureReport(vector=card, latents=cards, n_texts=len(texts), neuronpedia_id=source.neuronpedia_id)


EXPLANATION_DEADLINE = 8.0
"""Seconds for all of a report's Neuronpedia requests together."""


def explain_report(report: FeatureReport, deadline: float = EXPLANATION_DEADLINE) -> dict[int, str]:
    """Neuronpedia's explanations of the report's latents, by index, all within ``deadline``
    seconds (latents without one are left out); an error when the SAE has no Neuronpedia pages or
    Neuronpedia cannot be reached."""
    from .neuronpedia import neuronpedia_explanations, neuronpedia_reachable

    if not report.latents:
        raise SAELoadError("the report has no latents to explain (a dense vector read without an SAE, or a zero vector).")
    if not report.neuronpedia_id:
        raise SAELoadError("this SAE has no Neuronpedia pages (a local SAE, or one Neuronpedia does not list, such as "
                           "Gemma Scope's non-canonical SAEs): there are no explanations to fetch.")
    if not neuronpedia_reachable():
        raise SAELoadError("Neuronpedia cannot be reached (offline?); the latents' links work once you are online.")
    return neuronpedia_explanations(report.neuronpedia_id, [c.index for c in report.latents], deadline)

