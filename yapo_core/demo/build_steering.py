"""What the demo LM's training adds to its residual stream at the SAE block: random offsets
(``BuildSize.residual_noise``) and its own concept directions (``BuildSize.concept_steering`` and
the knobs on top of it), so that the model learns to act on those directions and keeps its facts
under them. :func:`yapo_core.demo.build_lm.train_lm` puts them on the block with a forward hook."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import corpus


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
    train with ``sign × s × direction`` added at every position, ``s`` drawn in [``floor``, 2] per
    example (``floor`` 0.5 unless ``BuildSize.steer_floor`` sets it), so that the model acts on that
    direction as it does on a named country or a cue, and keeps its facts under it. A general
    question or a plain behaviour offer marked with :data:`corpus.RANDOM_DIRECTION`
    (``BuildSize.fact_noise``, ``offer_noise``, ``ab_noise``) gets a random direction of the directions' mean norm
    instead, times a size drawn in [0.5, 2]. Until ``start`` (the directions are not yet formed)
    those examples do not count in the loss.

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
                 answer_size: float = 1.0, floor: float = 0.5):
        self.specific, self.floor = specific, floor
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
                size = self.floor + (2.0 - self.floor) * torch.rand((), generator=self.generator).item()
                offsets[row] = steer[1] * size * directions[steer[0]]
        return h + offsets[:, None, :]

    def _random_direction(self, width: int, directions: dict[str, torch.Tensor]) -> torch.Tensor:
        """A random direction (``BuildSize.fact_noise``, ``offer_noise``, ``ab_noise``) of a concept
        direction's size: the directions' mean norm, times a size drawn in [0.5, 2]."""
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
