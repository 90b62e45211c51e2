"""``yapo features``: the Features page on the command line. The top SAE latents of a vector (the
largest ``|v|`` of a sparse one, the nearest by cosine to a dense one), each with its logit lens,
its activity on the pairs of ``--data`` when given, and its Neuronpedia page; the whole vector's
size, sparsity and logit lens first."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from .cli_args import add_data_args, add_model_args, add_sae_args

TEXTS = 64
"""Pairs of ``--data`` read for the latents' activity unless ``--limit`` (the app reads as many)."""


def add_parser(sub) -> None:
    f = sub.add_parser("features", help="the top SAE latents of a vector: logit lens, activity on pairs, Neuronpedia",
                       description=__doc__)
    add_model_args(f)
    add_sae_args(f)
    add_data_args(f, required=False)
    f.set_defaults(limit=TEXTS)
    f.add_argument("--vector", required=True, help=".safetensors vector file")
    f.add_argument("--top", type=int, default=10, help="latents to show (default 10)")
    f.add_argument("--tokens", type=int, default=8, help="tokens per side of each logit lens (default 8)")
    f.add_argument("--json", metavar="FILE", help="also write the whole report as JSON")
    f.add_argument("--allow-other-model", action="store_true", help="read a vector trained on another model")
    f.add_argument("--explain", action="store_true",
                   help="also fetch each latent's explanation from Neuronpedia (SAEs it lists; needs the network)")
    f.epilog = (f"--data (read with the same options as for train; its first {TEXTS} pairs unless --limit) gives "
                "the texts each latent's activity is measured on: the rendered prompt and chosen answer of each pair.")


def _tokens(scores) -> str:
    return ", ".join(repr(s.token) for s in scores)


def render(report, hook: str, explanations: dict[int, str] | None = None) -> str:
    """The report as plain text, one block for the vector and one per latent (with its Neuronpedia
    explanation, when ``explanations`` has one)."""
    v = report.vector
    lines = [f"{v.kind} vector ({v.method}) steering {hook}: {v.width:,} entries, L0 {v.l0:,}, norm {v.norm:.4g}, "
             f"top-10 share of |v| {v.top10_mass:.1%}, "
             + ("decoded direction" if v.kind == "sparse" else "residual") + f" norm {v.direction_norm:.4g}"]
    if v.dropped_at_plus is not None:
        lines.append(f"  a dense export (GGUF) drops {v.dropped_at_plus:.1%} of it at m=+1, "
                     f"{v.dropped_at_minus:.1%} at m=-1")
    lines += [f"  promotes: {_tokens(v.logit_lens.top)}", f"  suppresses: {_tokens(v.logit_lens.bottom)}"]
    if not report.latents:
        lines.append("no latents to show: the vector is zero" if v.kind == "sparse"
                     else "no latents to show: give the SAE (--sae-path, or --sae-release and --sae-id)")
    for card in report.latents:
        weight = f"v = {card.weight:+.4g}" if card.weight_kind == "value" else f"cosine {card.weight:+.3f}"
        lines += ["", f"latent {card.index}  {weight}" + (f"  {card.neuronpedia_url}" if card.neuronpedia_url else ""),
                  f"  promotes: {_tokens(card.logit_lens.top)}", f"  suppresses: {_tokens(card.logit_lens.bottom)}"]
        if explanations is not None:
            lines.append(f"  Neuronpedia: {explanations.get(card.index, '(no explanation)')}")
        a = card.activity
        if a is not None and a.density == 0:
            lines.append(f"  never active on the {a.n_tokens:,} tokens of the task's pairs")
        elif a is not None:
            lines.append(f"  active on {a.density:.1%} of {a.n_tokens:,} tokens, max {a.max_value:.3g}, "
                         f"mean when active {a.mean_active:.3g}")
            for e in a.examples:
                window = "".join(f"[{t}]" if i == e.peak else t for i, t in enumerate(e.tokens))
                lines.append(f"  peak {e.max_value:.3g}: {window!r}")
    return "\n".join(lines)


def cmd_features(args) -> int:
    from . import checks
    from .cli_args import load_model_from_args, load_pairs_from_args, load_vector_from_args
    from .errors import YapoError
    from .export import check_output_path
    from .features import dialogue_texts, explain_report, feature_report

    k = checks.whole("--top", args.top, 1)
    lens_k = checks.whole("--tokens", args.tokens, 1)
    out = check_output_path(args.json, "features.json") if args.json else None
    pairs = list(load_pairs_from_args(args, training=False)) if args.data else []  # bad data fails before a (large) model loads
    model, tokenizer = load_model_from_args(args)
    vector, sae = load_vector_from_args(args, model)
    texts = dialogue_texts(tokenizer, pairs) if pairs else []
    report = feature_report(vector, model, tokenizer, sae, texts, k=k, lens_k=lens_k)
    explanations, failed = None, None
    if args.explain:
        try:
            explanations = explain_report(report)
        except YapoError as exc:  # the report is still shown and written; the run says what is missing
            failed = exc
    print(render(report, vector.hook_name, explanations))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        extra = {"explanations": {str(i): text for i, text in explanations.items()}} if explanations is not None else {}
        out.write_text(json.dumps({**asdict(report), **extra}, indent=2))
        print(f"written to {out}", file=sys.stderr)
    if failed is not None:
        print(f"error: --explain: {failed}", file=sys.stderr)
        return 1
    return 0

