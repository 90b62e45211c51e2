"""The Python API end to end on the built-in demo world (no download).

    python scripts/example_api.py              # the full demo world (3 to 7 minutes on 2 quiet cores to build once)
    python scripts/example_api.py --size mini  # the miniature test world (seconds; it steers nothing)
"""

import argparse
import tempfile
from pathlib import Path

from yapo_core import TrainConfig, Trainer, generate, load_model, load_sae, load_vector, save_vector
from yapo_core.demo import TRAINING, build_demo_world
from yapo_core.evaluation import mcq_accuracy, mcq_items_from_pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="full", choices=["full", "mini"])
    parser.add_argument("--country", default="egypt")
    parser.add_argument("--steps", type=int, default=TRAINING["max_steps"])
    args = parser.parse_args()

    world = build_demo_world(size=args.size)  # a tiny Llama, its tokenizer and a sae-lens SAE
    model, tok = load_model(world.model_dir, device="cpu")
    sae = load_sae(path=world.sae_dir, device="cpu")
    task = world.culture(args.country)  # non-localized MCQ pairs, read with yapo_core.load_pairs
    train, test = task.pairs("train"), task.pairs("test")

    # The demo world's recommended settings (a larger learning rate than the public runs'; see TRAINING).
    config = TrainConfig(kind="sparse", **{**TRAINING, "max_steps": args.steps}, epochs=1000)
    trainer = Trainer(model, tok, train, config, sae=sae)
    for m in trainer:
        if m.step % 100 == 0 or m.step == trainer.total_steps:
            print(f"step {m.step}: loss {m.loss:.3f}, reward accuracy {m.reward_accuracy:.2f}, L0 {m.l0}")
    vector = trainer.vector

    items = mcq_items_from_pairs(test)
    print(f"held-out non-localized MCQ accuracy for {args.country}: "
          f"{mcq_accuracy(model, tok, items):.2f} unsteered, {mcq_accuracy(model, tok, items, vector, 1.0):.2f} steered")
    answers = generate(model, tok, test[0].prompt, vector, multipliers=[0, 1], max_new_tokens=12)[0]
    print(f"prompt: {test[0].prompt!r}\n  unsteered: {answers[0.0]!r}\n  steered x1: {answers[1.0]!r}")

    path = save_vector(vector, Path(tempfile.mkdtemp()) / f"{args.country}.safetensors")
    again = load_vector(path, model=model, sae=sae)  # checked against the model and SAE
    print(f"saved and reloaded {path.name}: {again.method}, layer {again.layer}, L0 {again.l0()}")


if __name__ == "__main__":
    main()
