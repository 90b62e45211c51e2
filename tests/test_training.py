"""Training: both kinds learn a consistent preference; metrics, checkpoints, NaN handling."""

import math
import pickle

import pytest
import torch
from conftest import consistent_pairs, make_model, make_sae, make_tokenizer

from yapo_core import PreferencePair, TrainConfig, Trainer, TrainingError
from yapo_core.chunked import train_chunk
from yapo_core.errors import SettingsError
from yapo_core.evaluation import preference_accuracy, score_pairs

FAST = dict(lr=0.05, warmup_steps=5, epochs=100, max_steps=60, batch_size=4, seed=0)


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_vector_learns_a_consistent_preference(tokenizer, kind):
    model, sae = make_model("llama"), make_sae()
    train, test = consistent_pairs(48, seed=1), consistent_pairs(24, seed=2)
    trainer = Trainer(model, tokenizer, train, TrainConfig(kind=kind, layer=1, **FAST), sae=sae)
    history = list(trainer)
    assert history[0].loss == pytest.approx(math.log(2), abs=1e-4)  # v = 0: loss is ln 2
    assert sum(m.loss for m in history[-10:]) / 10 < 0.45
    vector = trainer.vector
    assert preference_accuracy(model, tokenizer, test, vector, 1.0, sae=sae) >= 0.95
    up = score_pairs(model, tokenizer, test, vector, 1.0, sae=sae)
    down = score_pairs(model, tokenizer, test, vector, -1.0, sae=sae)
    # the chosen answer's log-probability within the pair, log σ(log p(y_w) − log p(y_l)),
    # rises at +1 and falls at −1
    two_way = lambda s: torch.nn.functional.logsigmoid(s.chosen - s.rejected)  # noqa: E731
    two_way_ref = lambda s: torch.nn.functional.logsigmoid(s.chosen_ref - s.rejected_ref)  # noqa: E731
    assert (two_way(up) > two_way_ref(up)).float().mean() >= 0.95
    assert (two_way(down) < two_way_ref(down)).float().mean() >= 0.95


def test_metrics_are_reported_every_step(tokenizer):
    model, sae = make_model("llama"), make_sae()
    trainer = Trainer(model, tokenizer, consistent_pairs(8), TrainConfig(kind="sparse", max_steps=3, batch_size=4), sae=sae)
    steps = list(trainer)
    assert [m.step for m in steps] == [1, 2, 3]
    m = steps[-1]
    assert m.total_steps == 3 and m.multiplier in (-1.0, 1.0) and m.step_time > 0
    assert m.l0 == int((trainer.vector.values != 0).sum()) and 0 < m.l0 <= 128
    assert m.vector_norm == pytest.approx(trainer.vector.norm())
    assert steps[0].lr == pytest.approx(5e-4 / 100)  # first warm-up step


def test_stop_ends_iteration(tokenizer):
    model = make_model("llama")
    trainer = Trainer(model, tokenizer, consistent_pairs(8), TrainConfig(kind="dense", layer=1, max_steps=50))
    for m in trainer:
        if m.step == 2:
            trainer.stop()
    assert trainer.step == 2


def test_a_stop_asked_before_iterating_is_kept_and_then_spent(tokenizer):
    trainer = Trainer(make_model("llama"), tokenizer, consistent_pairs(8), TrainConfig(kind="dense", layer=1, max_steps=4))
    trainer.stop()  # e.g. from another thread, before the training loop starts
    assert list(trainer) == [] and trainer.step == 0
    assert [m.step for m in trainer] == [1, 2, 3, 4]  # the request ended one iteration; the next resumes


def test_checkpoint_and_resume_continue_exactly(tokenizer, tmp_path):
    pairs = consistent_pairs(16)
    cfg = dict(kind="sparse", max_steps=6, batch_size=4, lr=0.01, warmup_steps=2)
    full = Trainer(make_model("llama"), tokenizer, pairs, TrainConfig(**cfg, checkpoint_every=3, checkpoint_dir=str(tmp_path)), sae=make_sae())
    full_losses = [m.loss for m in full]
    resumed = Trainer(make_model("llama"), tokenizer, pairs, TrainConfig(**cfg), sae=make_sae())
    resumed.load_checkpoint(tmp_path / "step-000003.safetensors")
    rest = [m.loss for m in resumed]
    assert rest == pytest.approx(full_losses[3:], rel=1e-5)
    torch.testing.assert_close(resumed.vector.values, full.vector.values)


def _chunk_in_fork(queue, *args, **kwargs):
    queue.put(pickle.dumps(train_chunk(*args, **kwargs)))  # as spaces' workers return results


def test_chunks_chain_to_the_same_vector_even_across_processes(tokenizer):
    """Chunked training (ZeroGPU: short GPU calls, each in a worker process that returns its
    result by pickling) gives the uninterrupted run's losses and vector."""
    import multiprocessing

    pairs = consistent_pairs(16)
    config = TrainConfig(kind="sparse", max_steps=7, batch_size=4, lr=0.01, warmup_steps=2)
    model, sae = make_model("llama"), make_sae()
    full = Trainer(model, tokenizer, pairs, config, sae=sae)
    full_losses = [m.loss for m in full]

    first = train_chunk(model, tokenizer, pairs, config, sae=sae, max_steps=3)
    assert [m.step for m in first.history] == [1, 2, 3] and not first.finished and first.total_steps == 7
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    worker = ctx.Process(target=_chunk_in_fork, args=(queue, model, tokenizer, pairs, config),
                         kwargs=dict(sae=sae, state=first.state, max_steps=3))
    worker.start()
    second = pickle.loads(queue.get(timeout=120))
    worker.join(60)
    assert second.state.step == 6 and not second.finished
    last = train_chunk(model, tokenizer, pairs, config, sae=sae, state=second.state, max_steps=50)
    assert last.finished and last.error is None and last.state.step == 7
    losses = [m.loss for chunk in (first, second, last) for m in chunk.history]
    assert losses == pytest.approx(full_losses, rel=1e-5)
    torch.testing.assert_close(last.state.tensors["v"], full.vector.values)


def test_chunk_reports_a_non_finite_loss_and_keeps_the_last_good_state(tokenizer):
    model, sae = make_model("llama"), make_sae()
    config = TrainConfig(kind="sparse", max_steps=10, lr=0.01, warmup_steps=1)
    first = train_chunk(model, tokenizer, consistent_pairs(8), config, sae=sae, max_steps=1)
    with torch.no_grad():
        sae.W_dec[:, 0] = float("nan")
    failed = train_chunk(model, tokenizer, consistent_pairs(8), config, sae=sae, state=first.state)
    assert failed.finished and failed.error and "last good vector" in failed.error
    torch.testing.assert_close(failed.state.tensors["v"], first.state.tensors["v"])
    assert failed.state.step == 1


def test_nan_stops_training_and_keeps_the_last_good_vector(tokenizer):
    model, sae = make_model("llama"), make_sae()
    trainer = Trainer(model, tokenizer, consistent_pairs(8), TrainConfig(kind="sparse", max_steps=10, lr=0.01, warmup_steps=1), sae=sae)
    next(iter(trainer))
    good = trainer.vector.values.clone()
    with torch.no_grad():
        sae.W_dec[:, 0] = float("nan")
    with pytest.raises(TrainingError, match="non-finite|became nan"):
        next(iter(trainer))
    torch.testing.assert_close(trainer.vector.values, good)
    assert torch.isfinite(trainer.vector.values).all()
    with torch.no_grad():  # the cause fixed, training goes on from the last good vector: the failure left no stop behind
        sae.W_dec[:, 0] = 0.0
    assert [m.step for m in trainer][:1] == [2]


def test_a_step_that_overflows_the_vector_is_undone_whole(tokenizer, monkeypatch):
    """Vector, AdamW moments, step count and schedule all stay at the last good step, so a run
    continued (or a checkpoint saved) after the failure is the run before it."""
    trainer = Trainer(make_model("llama"), tokenizer, consistent_pairs(8),
                      TrainConfig(kind="dense", layer=1, max_steps=10, lr=0.01, warmup_steps=1))
    next(iter(trainer))
    state = trainer.state()
    real_step = trainer.optimizer.step

    def overflow(*a, **k):
        out = real_step(*a, **k)
        with torch.no_grad():
            trainer.v.fill_(float("inf"))
        return out

    monkeypatch.setattr(trainer.optimizer, "step", overflow)
    with pytest.raises(TrainingError, match="vector became non-finite at step 2"):
        next(iter(trainer))
    after = trainer.state()
    assert after.meta == state.meta and trainer.scheduler.last_epoch == 1
    assert state.tensors.keys() == after.tensors.keys() >= {"v", "exp_avg", "exp_avg_sq"}
    for key, value in state.tensors.items():
        assert torch.equal(after.tensors[key], value), key
    assert torch.equal(trainer.optimizer.state[trainer.v]["exp_avg"].cpu(), state.tensors["exp_avg"])


def test_bad_settings_are_refused(tokenizer):
    model = make_model("llama")
    with pytest.raises(SettingsError, match="needs an SAE"):
        Trainer(model, tokenizer, consistent_pairs(4), TrainConfig(kind="sparse"))
    with pytest.raises(SettingsError, match="layer 9 is out of range"):
        Trainer(model, tokenizer, consistent_pairs(4), TrainConfig(kind="dense", layer=9))
    for bad, message in [(dict(lr=-1), "lr=-1 must be a finite number above 0"), (dict(lr=float("nan")), "lr=nan"),
                         (dict(beta=float("nan")), "beta=nan"), (dict(grad_clip=0), "grad_clip=0 must be"),
                         (dict(grad_clip=-1.0), "grad_clip=-1.0"), (dict(weight_decay=-0.1), "weight_decay=-0.1"),
                         (dict(max_steps=0), "max_steps=0 must be a whole number of at least 1"),
                         (dict(max_steps=-5), "max_steps=-5"), (dict(batch_size=2.5), "batch_size=2.5"),
                         (dict(max_length=1), "max_length=1"), (dict(warmup_steps=-1), "warmup_steps=-1")]:
        with pytest.raises(SettingsError, match=message):
            TrainConfig(**bad)
    with pytest.raises(TrainingError, match=r"raise max_length \(now \d+\)"):
        Trainer(model, tokenizer, consistent_pairs(4), TrainConfig(kind="dense", layer=1, max_length=8))


def test_vector_and_optimiser_stay_fp32_with_a_bf16_model(tokenizer):
    model, sae = make_model("llama").to(torch.bfloat16), make_sae()
    trainer = Trainer(model, tokenizer, consistent_pairs(4), TrainConfig(kind="sparse", max_steps=2), sae=sae)
    list(trainer)
    assert trainer.v.dtype == torch.float32
    assert all(s.dtype == torch.float32 for s in trainer.optimizer.state[trainer.v].values() if s.ndim)


def test_mcq_rejected_every_option_trains_against_each_wrong_letter(tokenizer):
    from yapo_core.data import PreferencePair

    prompt = "Which?\nA. red\nB. green\nC. blue\nAnswer with the letter."
    pairs = [PreferencePair(prompt, "C", "A"), PreferencePair("Say hi.", "Hello there.", "Go away.")]
    model = make_model("llama")
    given = Trainer(model, tokenizer, pairs, TrainConfig(kind="dense", layer=1, max_steps=1))
    every = Trainer(model, tokenizer, pairs, TrainConfig(kind="dense", layer=1, max_steps=1, mcq_rejected="every_option"))
    assert len(given.encoded) == 2 and len(every.encoded) == 3  # C vs A, C vs B, and the open-ended pair
    assert "every_option" in every.vector.metadata["training"]
    with pytest.raises(SettingsError, match="mcq_rejected='all' is unknown"):
        TrainConfig(mcq_rejected="all")
    with pytest.raises(SettingsError, match="needs the pairs as text"):
        Trainer(model, tokenizer, given.encoded, TrainConfig(kind="dense", layer=1, mcq_rejected="every_option"))


def test_max_length_is_capped_by_the_models_context(tokenizer):
    """A GPT-2 with 48 positions and max_length 512: long prompts are cut to fit the context
    (the template kept) instead of running past the position table."""
    model = make_model("gpt2")
    model.config.n_positions = 48
    model.transformer.wpe.weight.data = model.transformer.wpe.weight.data[:48]
    model.transformer.wpe.num_embeddings = 48
    pairs = [PreferencePair("tell me " * 20 + f"about {x}?", f"yes {x}", "no") for x in ("tea", "rain", "owls")]
    trainer = Trainer(model, tokenizer, pairs, TrainConfig(kind="dense", layer=1, max_steps=1, batch_size=3))
    assert trainer.data_report.truncated == 3
    assert all(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) <= 48 for p in trainer.encoded)
    assert trainer.run_step().loss > 0  # runs within the position table
    with pytest.raises(TrainingError, match="context is 48 tokens"):
        Trainer(model, tokenizer, [PreferencePair("q?", "y" * 60, "n")], TrainConfig(kind="dense", layer=1))


def test_pairs_whose_answers_are_identical_teach_nothing_and_are_refused(tokenizer):
    same = [PreferencePair(f"Q{i}?", "same", "same") for i in range(4)]
    with pytest.raises(TrainingError, match="nothing to learn"):
        Trainer(make_model("llama"), tokenizer, same, TrainConfig(kind="dense", layer=1))


def test_settings_a_user_may_not_mean_are_noted():
    from yapo_core.training import schedule_notes

    config = TrainConfig(kind="dense", layer=1, lr=0.01, warmup_steps=100, batch_size=32)
    warm, batch = schedule_notes(config, total_steps=60, n_pairs=12)
    assert warm.startswith("warmup_steps=100 is longer than the run of 60 steps") and "rises to 0.006 at most" in warm
    assert batch.startswith("batch_size=32 is more than the 12 training pairs")
    assert schedule_notes(TrainConfig(kind="dense", layer=1, warmup_steps=10, batch_size=4), 60, 12) == []
    assert schedule_notes(TrainConfig(kind="dense", layer=1, warmup_steps=60, batch_size=4), 60, 12) == []  # reaches lr


def test_training_draws_both_directions():
    """The objective is bi-directional (docs/method.md §3): each step draws d = +1 or −1, so a run
    trains the vector towards the chosen answers and, negated, towards the rejected ones."""
    model, sae = make_model("llama"), make_sae()
    config = TrainConfig(kind="sparse", max_steps=20, batch_size=2, lr=0.01, warmup_steps=1, seed=0)
    steps = list(Trainer(model, make_tokenizer(), consistent_pairs(6), config, sae=sae))
    drawn = [m.multiplier for m in steps]
    assert set(drawn) == {-1.0, 1.0} and 5 <= drawn.count(1.0) <= 15
