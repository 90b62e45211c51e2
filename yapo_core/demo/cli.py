"""``yapo demo build`` and ``yapo demo info``: build the demo world ahead of time, or describe it."""

from __future__ import annotations

import argparse
import sys

from .config import SIZES
from .world import DemoWorld, build_demo_world, default_cache_dir, load_demo_world


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


def _built(seed: int, size: str) -> bool:
    """Whether a finished world of ``size`` is in the default cache (one that cannot be read: not)."""
    try:
        return load_demo_world(None, seed=seed, size=size) is not None
    except (OSError, ValueError):
        return False


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
        folder = f" --cache-dir {args.cache_dir}" if args.cache_dir else ""
        others = [] if args.cache_dir else [size for size in SIZES if size != args.size and _built(args.seed, size)]
        also = f" (a {others[0]} world is built: yapo demo info --seed {args.seed} --size {others[0]})" if others else ""
        print(f"no finished demo world at {where}; build it with: yapo demo build --seed {args.seed} --size {args.size}"
              f"{folder}{also}", file=sys.stderr)
        return 1
    print(_summary(world))
    for task in world.tasks():
        print(f"  task {task.name:<16} {task.kind:<10} " + "  ".join(f"{k}={v}" for k, v in task.paths.items()))
    return 0
