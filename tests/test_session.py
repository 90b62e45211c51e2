"""Sessions: presets, tasks, background runs, isolation, limits, streaming, export round trips."""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from app_fixtures import tiny_world, write_pairs_jsonl  # noqa: F401 (fixture)
from conftest import make_sae

from yapo_core import hub, training
from yapo_core.data import PairSet, PreferencePair
from yapo_core.demo import caveats
from yapo_core.errors import DataError, ModelLoadError, SAELoadError, SettingsError, VectorFileError
from yapo_core.evaluation import generation_accuracy
from yapo_core.export import load_vector, save_vector
from yapo_core.generation import generate
from yapo_core.steering import dense_equivalent
from yapo_studio import catalog as S_catalog
from yapo_studio import runs as S_runs
from yapo_studio import session as S_session
from yapo_studio import store as S_store
from yapo_studio import tasks as S_tasks

ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(lr=0.05, warmup_steps=2, batch_size=4, seed=0)


def wait(run, timeout=60.0):
    deadline = time.time() + timeout
    while run.active and time.time() < deadline:
        time.sleep(0.05)
    assert not run.active, f"run still {run.status} after {timeout} s"


@pytest.fixture(scope="module")
def catalog():
    return S_catalog.load_catalog(ROOT / "assets" / "presets.json")


@pytest.fixture
def ready(tiny_world, catalog):
    """A session with the tiny model + SAE and a file task loaded."""
    s = S_session.Session(catalog=catalog)
    s.load_preset(catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir))
    s.load_task(S_tasks.TaskSpec("file", path=str(tiny_world.data_file), test_fraction=0.25))
    yield s
    s.close()


def test_custom_preset_loads_local_folders_and_reports_mismatches(tiny_world, catalog, tmp_path):
    s = S_session.Session(catalog=catalog)
    custom = catalog.preset("custom")
    bundle = s.load_preset(custom, model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir))
    assert bundle.hook_name == "blocks.1.hook_resid_post" and bundle.layer == 1
    with pytest.raises(SettingsError, match="enter a model"):
        s.load_preset(custom, model=" ")
    with pytest.raises(ModelLoadError, match="does not exist"):
        s.load_preset(custom, model="/no/such/folder", layer=1)
    wide = tmp_path / "wide-sae"
    make_sae(d_in=48).save_model(wide)
    with pytest.raises(SAELoadError, match="d_in=48"):
        s.load_preset(custom, model=str(tiny_world.model_dir), sae_path=str(wide))
    with pytest.raises(SAELoadError, match="layer 3"):
        s.load_preset(custom, model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir), layer=3)


def test_a_public_app_loads_only_allowed_hub_ids_and_tells_nothing_about_server_paths(tiny_world, catalog, monkeypatch):
    monkeypatch.setenv("YAPO_PUBLIC", "1")
    monkeypatch.setenv("YAPO_ALLOW_MODELS", "someone/allowed-model")
    s = S_session.Session(catalog=catalog)
    custom = catalog.preset("custom")
    messages = []
    for model in (str(tiny_world.model_dir), "/no/such/folder", "someone/other-model"):
        with pytest.raises(SettingsError) as info:
            s.load_preset(custom, model=model, layer=1)
        messages.append(str(info.value).replace(model, "<model>"))
    assert len(set(messages)) == 1 and "someone/allowed-model" in messages[0] and "gpt2" in messages[0]
    for path in (str(tiny_world.sae_dir), "/no/such/sae"):
        with pytest.raises(SettingsError, match="SAE folders on the server cannot be loaded"):
            s.load_preset(custom, model="openai-community/gpt2", sae_path=path)
    with pytest.raises(SettingsError, match="only these SAE releases: .*gemma-scope"):
        s.load_preset(custom, model="openai-community/gpt2", sae_release="someone/sae", sae_id="x")


def test_a_run_is_named_by_the_settings_that_set_it_apart(ready):
    plain = ready.start_run(ready.default_config(max_steps=2))
    tuned = ready.start_run(ready.default_config(max_steps=2, lr=0.02, beta=0.25))
    wait(plain), wait(tuned)
    method, task = ready.method.label.split()[0], ready.task.label
    assert plain.name == f"1. {method} · {task} · steps 2"
    assert tuned.name == f"2. {method} · {task} · lr 0.02, steps 2, β 0.25"
    many = ready.start_run(ready.default_config(max_steps=2, lr=0.02, beta=0.25, seed=5, epochs=3))
    wait(many)
    assert many.name == f"3. {method} · {task} · lr 0.02, steps 2, epochs 3, …"  # at most three named
    from yapo_core import TrainConfig
    # no step limit where the page's defaults set one (the demo world's): all the epochs
    assert S_runs.settings_changed(TrainConfig(max_steps=None, epochs=1), TrainConfig(max_steps=600)) == " · steps all, epochs 1"


def test_caps_on_prompts_tokens_and_steps(ready, monkeypatch):
    run = ready.start_run(ready.default_config(max_steps=2, **QUICK))
    wait(run)
    label = run.name
    monkeypatch.setenv("YAPO_MAX_PROMPT_CHARS", "10")
    monkeypatch.setenv("YAPO_MAX_NEW_TOKENS", "4")
    monkeypatch.setenv("YAPO_MAX_STEPS", "3")
    with pytest.raises(SettingsError, match="the prompt has 11 characters; this app takes at most 10"):
        next(ready.generate_stream(label, "x" * 11, [0, 1], max_new_tokens=2))
    with pytest.raises(SettingsError, match="between 1 and 4, not 5"):
        next(ready.generate_stream(label, "Hi", [0, 1], max_new_tokens=5))
    with pytest.raises(SettingsError, match="max steps 5 is above this app's limit of 3"):
        ready.start_run(ready.default_config(max_steps=5, **QUICK))
    with pytest.raises(SettingsError, match="max steps 5 is above this app's limit of 3"):
        ready.compare("preference", [0.0, 1.0], ["yapo"], max_steps=5)  # the same limit for a comparison
    capped = ready.start_run(ready.default_config(max_steps=None, **QUICK))
    wait(capped)
    assert capped.status == "finished" and capped.step == 3
    assert "steps" not in capped.name  # the cap is the default run's length: nothing to name
    monkeypatch.setattr(ready, "training_defaults", lambda: {"max_steps": 3})  # a preset that sets the cap's steps
    asked_all = ready.start_run(ready.default_config(max_steps=None, **QUICK))
    wait(asked_all)
    assert asked_all.step == 3 and "steps all" not in asked_all.name  # it ran the cap's 3 steps, not all epochs


def test_an_unreachable_hub_fails_within_seconds(catalog, monkeypatch):
    s = S_session.Session(catalog=catalog)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):  # HF_HUB_OFFLINE=1 in tests
        s.load_preset(catalog.preset("gpt2-small"))
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(hub, "host_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        s.load_preset(catalog.preset("gemma-2-2b-it"))
    with pytest.raises(DataError, match="cannot be reached"):
        S_tasks.load_task(S_tasks.TaskSpec("behaviour", name="power-seeking"), catalog.tasks)
    assert time.perf_counter() - start < 15


def test_yapo_device_map_loads_models_through_accelerate(tiny_world, catalog, monkeypatch):
    monkeypatch.setenv("YAPO_DEVICE_MAP", "auto")
    spec = S_catalog.spec_for(catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir))
    assert spec.device_map == "auto"
    seen, real_load = [], S_store.load_model
    monkeypatch.setattr(S_store, "load_model", lambda *a, **k: seen.append(k["device_map"]) or real_load(*a, **k))
    bundle = S_store.load_bundle(spec)
    assert seen == ["auto"] and bundle.sae.W_dec.device == next(bundle.model.parameters()).device
    monkeypatch.delenv("YAPO_DEVICE_MAP")
    assert S_catalog.spec_for(catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir)).device_map is None


def test_models_are_shared_between_sessions_but_runs_are_not(tiny_world, catalog):
    store, limiter = S_store.ModelStore(), S_runs.JobLimiter(2)
    a, b = S_session.Session(store, limiter, catalog), S_session.Session(store, limiter, catalog)
    for s in (a, b):
        s.load_preset(catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir))
        s.load_task(S_tasks.TaskSpec("file", path=str(tiny_world.data_file)))
    assert a.bundle is b.bundle
    run = a.start_run(a.default_config(max_steps=3, **QUICK))
    wait(run)
    assert list(a.vectors()) == [run.name] and b.vectors() == {} and b.runs == {}


def test_a_run_trains_in_the_background_and_reports_progress(ready):
    run = ready.start_run(ready.default_config(max_steps=6, **QUICK))
    assert run.status in ("queued", "preparing", "running")
    wait(run)
    assert run.status == "finished", run.error
    assert [m.step for m in run.history] == list(range(1, 7)) and run.total_steps == 6
    assert run.history[0].loss == pytest.approx(0.6931, abs=1e-3)
    assert run.vector.kind == "sparse" and run.vector.l0() > 0 and run.eta() is None
    assert "finished, step 6/6" in run.describe()


def test_stop_ends_a_run_early_and_keeps_its_vector(ready):
    run = ready.start_run(ready.default_config(max_steps=10_000, **QUICK))
    while run.step < 2:
        assert run.active, run.error
        time.sleep(0.02)
    assert run.eta() is not None and run.eta() > 0
    run.stop()
    wait(run)
    assert run.status == "stopped" and 2 <= run.step < 10_000 and run.vector is not None


def test_training_yields_to_requests_that_hold_the_model(ready):
    """Each step first waits for the requests queued before it, so a request never waits behind a
    run that keeps taking the model back; a fast-engine step then runs beside new requests."""
    run = ready.start_run(ready.default_config(max_steps=10_000, **QUICK))
    while run.step < 2:
        assert run.active, run.error
        time.sleep(0.02)
    assert run.trainer.objective.engine == "fast" and not run.trainer.objective.exclusive
    with run.bundle.lock:  # a long request (an evaluation) holds the model
        held_at = run.step
        time.sleep(0.5)
        assert run.step <= held_at + 1  # at most the step that was under way
    while run.step < held_at + 3:  # and training goes on once it is done
        assert run.active, run.error
        time.sleep(0.02)
    run.stop()
    wait(run)


def test_zero_gpu_runs_train_in_chunks_in_worker_processes(ready, monkeypatch):
    """As on ZeroGPU: each chunk is a call into a forked worker that gets its arguments and
    returns its result pickled, on behalf of the request that started the run. The chunks add
    up to the uninterrupted run."""
    import contextvars
    import multiprocessing
    import pickle

    request = contextvars.ContextVar("request", default=None)
    calls = []
    real_chunk = S_runs.train_chunk_on_gpu

    def in_worker(queue, payload):
        queue.put(pickle.dumps(real_chunk(*pickle.loads(payload))))

    def zero_gpu_call(*args):
        calls.append(request.get())
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        worker = ctx.Process(target=in_worker, args=(queue, pickle.dumps(args)))
        worker.start()
        result = pickle.loads(queue.get(timeout=120))
        worker.join(60)
        return result

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("YAPO_TRAIN_CHUNK_SECONDS", "0.001")  # one step per chunk
    monkeypatch.setattr(S_runs, "train_chunk_on_gpu", zero_gpu_call)
    config = ready.default_config(max_steps=4, **QUICK)
    request.set("user-request")
    run = ready.start_run(config)
    wait(run, timeout=120)
    assert run.status == "finished", run.error
    assert calls == ["user-request"] * 4  # one call per chunk, each in the starting request's context
    assert [m.step for m in run.history] == [1, 2, 3, 4] and run.total_steps == 4
    assert "finished, step 4/4" in run.describe()
    b = ready.bundle
    whole = training.Trainer(b.model, b.tokenizer, ready.task.train, config, sae=b.sae)
    assert [m.loss for m in whole] == pytest.approx([m.loss for m in run.history], rel=1e-5)
    torch.testing.assert_close(run.vector.values, whole.vector.values)
    assert run.vector.hook_name == whole.vector.hook_name and run.vector.metadata["steps"] == "4"


def test_a_worker_keeps_the_model_it_had_to_load(tiny_world, monkeypatch):
    """A ZeroGPU worker forked before the user loaded the model loads it once, not per chunk."""
    loads = []
    real = S_store.load_bundle
    monkeypatch.setattr(S_store, "load_bundle", lambda spec, label="": loads.append(spec) or real(spec, label))
    spec = S_store.LoadSpec(str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir), dtype="bf16")  # not loaded yet
    first = S_store.loaded_bundle(spec)
    del first
    import gc

    gc.collect()
    assert S_store.loaded_bundle(spec) is not None and len(loads) == 1


def test_chunked_runs_stop_between_chunks_and_report_a_failed_chunk(ready, monkeypatch):
    monkeypatch.setenv("YAPO_TRAIN_CHUNK_SECONDS", "0.001")  # one step per chunk
    run = ready.start_run(ready.default_config(max_steps=10_000, **QUICK))
    while run.step < 2:
        assert run.active, run.error
        time.sleep(0.02)
    run.stop()
    wait(run)
    assert run.status == "stopped" and 2 <= run.step < 10_000
    assert [m.step for m in run.history] == list(range(1, run.step + 1)) and run.vector.metadata["steps"] == str(run.step)

    real = S_runs.train_chunk_on_gpu

    def failing(spec, pairs, config, state, seconds):
        result = real(spec, pairs, config, state, seconds)
        if result.state.step >= 2:
            result.error, result.finished = "training stopped: the loss became nan at step 3.", True
        return result

    monkeypatch.setattr(S_runs, "train_chunk_on_gpu", failing)
    run = ready.start_run(ready.default_config(max_steps=50, **QUICK))
    wait(run)
    assert run.status == "failed" and "nan" in run.error and run.step == 2 and run.vector is not None
    with pytest.raises(SettingsError, match="YAPO_TRAIN_CHUNK_SECONDS='soon'"):
        monkeypatch.setenv("YAPO_TRAIN_CHUNK_SECONDS", "soon")
        ready.start_run(ready.default_config(max_steps=2, **QUICK))


def _one_running_one_queued(tiny_world, catalog, second_steps: int, same_session: bool):
    """Two runs under a one-slot limiter: the first running, the second queued behind it."""
    limiter = S_runs.JobLimiter(1)
    a = S_session.Session(limiter=limiter, catalog=catalog)
    b = a if same_session else S_session.Session(limiter=limiter, catalog=catalog)
    for s in {id(a): a, id(b): b}.values():
        s.load_preset(catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir))
        s.load_task(S_tasks.TaskSpec("file", path=str(tiny_world.data_file)))
    first = a.start_run(a.default_config(max_steps=10_000, epochs=100_000, **QUICK))  # runs until stopped
    while first.status != "running":
        time.sleep(0.02)
    second = b.start_run(b.default_config(max_steps=second_steps, epochs=100_000, **{**QUICK, "seed": 1}))
    time.sleep(0.5)
    assert second.status == "queued"
    return a, first, second


def test_the_limiter_queues_runs_beyond_its_slots(tiny_world, catalog):
    _, first, second = _one_running_one_queued(tiny_world, catalog, 2, same_session=False)
    first.stop()
    wait(second)
    assert second.status == "finished" and first.status == "stopped"


@pytest.mark.timeout(300)  # a slot never released fails here instead of hanging the suite
def test_queued_runs_start_in_the_order_they_were_asked_for(tiny_world, catalog):
    """First come, first served: a user who queues a second run while another user's waits does not
    take the slot first, and a queued run says what it waits for."""
    a, first, second = _one_running_one_queued(tiny_world, catalog, 10_000, same_session=False)
    assert "(waiting for a run to finish)" in second.describe()
    with pytest.raises(SettingsError, match="is already training this method on this task with these settings"):
        a.start_run(a.default_config(max_steps=10_000, epochs=100_000, **QUICK))  # Start clicked twice: refused
    later = a.start_run(a.default_config(max_steps=10_000, epochs=100_000, **{**QUICK, "seed": 7}))  # the first user again
    time.sleep(0.3)
    assert later.status == "queued" and "(waiting for 1 run(s) ahead of it)" in later.describe()
    first.stop()
    while second.status == "queued":
        time.sleep(0.02)
    assert second.status in ("preparing", "running") and later.status == "queued"
    second.stop(), later.stop()
    wait(second), wait(later)


@pytest.mark.timeout(300)  # a slot never released fails here instead of hanging the suite
def test_the_limiter_serves_waiting_jobs_in_turn():
    import threading

    limiter, order = S_runs.JobLimiter(1), []
    holder = threading.Event()
    assert limiter.acquire(holder)
    jobs = [threading.Event() for _ in range(4)]

    def wait_for(job):
        if limiter.acquire(job, poll=0.01):
            order.append(job)
            limiter.release()

    threads = []
    for job in jobs:  # each asks after the one before is in line
        threads.append(threading.Thread(target=wait_for, args=(job,)))
        threads[-1].start()
        while limiter.ahead(job) is None:
            time.sleep(0.005)
    assert [limiter.ahead(j) for j in jobs] == [0, 1, 2, 3]
    jobs[1].set()  # one gives up its place
    limiter.release()
    for t in threads:
        t.join(5)
    assert order == [jobs[0], jobs[2], jobs[3]] and limiter.ahead(jobs[1]) is None
    with pytest.raises(RuntimeError, match="released more often"):
        limiter.release()


@pytest.mark.timeout(300)  # a slot never released fails here instead of hanging the suite
def test_a_queued_run_stopped_while_it_waits_never_starts(tiny_world, catalog):
    """One Stop ends a tab's running run and its queued one: the queued run must not take the slot
    the stopped one frees, nor start training once it has it."""
    session, first, second = _one_running_one_queued(tiny_world, catalog, 10_000, same_session=True)
    assert session.stop_all() == 2
    wait(first)
    wait(second)
    assert first.status == "stopped" and second.status == "stopped" and second.step == 0


def test_run_settings_are_checked(ready):
    with pytest.raises(SettingsError, match="sparse vector, but the settings say 'dense'"):
        ready.start_run(training.TrainConfig(kind="dense", layer=1))
    empty = S_session.Session()
    with pytest.raises(SettingsError, match="load a model"):
        empty.start_run()
    with pytest.raises(SettingsError, match="unknown"):
        ready.set_method("pca")


def test_dense_runs_take_the_layer_of_the_sae(ready):
    ready.set_method("bipo")
    run = ready.start_run(ready.default_config(max_steps=2, **QUICK))
    wait(run)
    assert run.status == "finished", run.error
    assert run.vector.kind == "dense" and run.vector.layer == 1


def test_file_tasks_preview_split_and_refuse_bad_uploads(tmp_path, monkeypatch):
    data = write_pairs_jsonl(tmp_path / "p.jsonl", 10)
    preview = S_tasks.preview_file(data)
    assert preview.columns == ["prompt", "chosen", "rejected"] and preview.schema == "pairs" and preview.n_rows == 10
    task = S_tasks.load_task(S_tasks.TaskSpec("file", path=str(data), test_fraction=0.2))
    assert (len(task.train), len(task.test)) == (8, 2)
    renamed = tmp_path / "r.csv"
    renamed.write_text("q,good,bad\nhi,yes,no\nho,yes,no\n")
    preview = S_tasks.preview_file(renamed)
    assert preview.schema is None and "cannot tell the schema" in preview.message
    task = S_tasks.load_task(S_tasks.TaskSpec("file", path=str(renamed), columns={"prompt": "q", "chosen": "good", "rejected": "bad"}))
    assert task.train.pairs[0].chosen == "yes"
    pickle = tmp_path / "p.pkl"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(DataError, match="not accepted"):
        S_tasks.preview_file(pickle)
    monkeypatch.setenv("YAPO_MAX_UPLOAD_MB", "1")
    big = tmp_path / "big.csv"
    big.write_text("prompt,chosen,rejected\n" + "a?,yes,no\n" * 200_000)  # 2 MB
    with pytest.raises(DataError, match="limit"):
        S_tasks.load_task(S_tasks.TaskSpec("file", path=str(big)))
    # a Parquet file far smaller on disk than in memory: refused by its footer, before a row is read
    import pandas as pd
    bomb = tmp_path / "bomb.parquet"
    pd.DataFrame({"prompt": [f"{i} " + "a" * 1000 for i in range(6000)], "chosen": ["yes"] * 6000,
                  "rejected": ["no"] * 6000}).to_parquet(bomb, compression="zstd")
    assert bomb.stat().st_size < 2**20
    with pytest.raises(DataError, match="MB of data once uncompressed; this app reads at most 4 MB"):
        S_tasks.preview_file(bomb)
    monkeypatch.setenv("YAPO_MAX_UPLOAD_ROWS", "5000")  # repeated rows: small even uncompressed, many in memory
    pd.DataFrame({"prompt": ["a" * 1000] * 6000, "chosen": ["yes"] * 6000, "rejected": ["no"] * 6000}).to_parquet(bomb)
    with pytest.raises(DataError, match="has 6,000 rows; this app reads at most 5,000"):
        S_tasks.preview_file(bomb)


def test_behaviour_tasks_read_a_local_copy_of_bipo(monkeypatch, catalog):
    monkeypatch.setenv("YAPO_BIPO_DIR", str(Path(__file__).resolve().parent / "data" / "bipo"))  # a real excerpt
    task = S_tasks.load_task(S_tasks.TaskSpec("behaviour", name="power-seeking", limit=10), catalog.tasks)
    assert len(task.train) == 10 and task.train.schema == "bipo"
    # each metric on the split it needs: BiPO's A/B behaviour rate on test_infer, the rest on test
    assert task.metrics() == {"preference": "test", "mcq_generated": "test_infer",  # no MCQ accuracy: it would
                              "behaviour": "test_infer", "generation": "test", "fluency": "test"}  # repeat the rate
    assert task.pairs_for("behaviour").schema == "bipo_ab" and task.pairs_for("preference") is task.test
    with pytest.raises(SettingsError, match="metric 'accuracy' is unknown"):
        task.pairs_for("accuracy")
    with pytest.raises(DataError, match="does not exist"):
        S_tasks.load_task(S_tasks.TaskSpec("behaviour", name="jailbreak"), catalog.tasks)  # not in the reference copy
    with pytest.raises(DataError, match="unknown"):
        S_tasks.load_task(S_tasks.TaskSpec("behaviour", name="sycophancy"), catalog.tasks)


def test_mcq_sweeps_carry_the_accuracy_of_one_letter_everywhere(ready, tmp_path):
    import json

    from yapo_core.evaluation import mcq_items_from_pairs, one_letter_accuracy

    data = tmp_path / "mcq.jsonl"
    golds = "ABBBCBDA" * 3
    data.write_text("".join(json.dumps({"prompt": f"Question {i}?\nA. one\nB. two\nC. three\nD. four\nAnswer:",
                                        "chosen": g, "rejected": "D" if g != "D" else "A"}) + "\n"
                            for i, g in enumerate(golds)))
    task = ready.load_task(S_tasks.TaskSpec("file", path=str(data), test_fraction=0.5))
    ready.set_method("caa")
    run = ready.start_run(ready.default_config())
    wait(run)
    assert run.status == "finished", run.error
    (label, share), = ready.letter_baselines([run.name, run.name], "mcq")  # one line per task
    letter, expected = one_letter_accuracy(mcq_items_from_pairs(task.pairs_for("mcq").pairs))
    assert share == expected and label == f"one letter everywhere ({letter}) · {task.label}"
    assert ready.letter_baselines([run.name], "preference") == []  # not a letter metric


def test_streamed_generation_ends_with_the_batched_result(ready):
    run = ready.start_run(ready.default_config(max_steps=4, **QUICK))
    wait(run)
    prompt = ready.test_pairs()[0].prompt
    parts = list(ready.generate_stream(run.name, prompt, [0.0, 2.0], max_new_tokens=8))
    b = ready.bundle
    direct = generate(b.model, b.tokenizer, prompt, run.vector, [0.0, 2.0], sae=b.sae, max_new_tokens=8)[0]
    assert parts[-1] == direct and len(parts) >= 2
    assert all(parts[-1][m].startswith(p[m]) for p in parts[:-1] for m in p)
    with pytest.raises(SettingsError, match="enter a prompt"):
        next(ready.generate_stream(run.name, "  ", [0.0, 1.0]))


def test_export_round_trip_and_loading_a_vector_file(ready, tmp_path):
    run = ready.start_run(ready.default_config(max_steps=4, **QUICK))
    wait(run)
    result = ready.export(run.name, multiplier=1.0)
    assert result.safetensors.is_file() and result.gguf.is_file() and result.gguf_error is None
    assert result.dropped_fraction == pytest.approx(dense_equivalent(run.vector, ready.bundle.sae, 1.0)[1])
    entry = ready.load_vector_file(result.safetensors)
    torch.testing.assert_close(entry.vector.values, run.vector.values)
    assert entry.label in ready.vectors() and entry.source == "file"
    again = ready.load_vector_file(result.safetensors)
    assert again.label != entry.label
    # a loaded file exports under its own name, not its label's "file · … safetensors"
    assert ready.export(again.label).safetensors.name == f"{result.safetensors.stem}-2.safetensors"
    later = ready.start_run(ready.default_config(max_steps=2, **QUICK))
    wait(later)
    assert list(ready.vectors()) == [run.name, entry.label, again.label, later.name]  # in the order they came
    ready.delete(entry.label)
    assert list(ready.vectors()) == [run.name, again.label, later.name]
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_text("not a vector")
    with pytest.raises(VectorFileError):
        ready.load_vector_file(bogus)
    with pytest.raises(DataError, match="not accepted"):
        ready.load_vector_file(ready.bundle.spec.model + "/config.json")
    assert load_vector(result.safetensors).metadata["steps"] == "4"
    other = load_vector(result.safetensors)
    other.metadata["model_fingerprint"] = "0" * len(other.metadata["model_fingerprint"])  # another model's weights
    with pytest.raises(VectorFileError, match="differ"):  # the app never loads it as if it were this model's
        ready.load_vector_file(save_vector(other, tmp_path / "other.safetensors"))


def test_features_and_sweep_through_the_session(ready):
    run = ready.start_run(ready.default_config(max_steps=4, **QUICK))
    wait(run)
    report = ready.features(run.name, k=3)
    assert 1 <= len(report.latents) <= 3 and report.n_texts > 0
    assert all(c.activity is not None for c in report.latents)
    (_, points), = ready.evaluate([run.name], "preference", [-1.0, 0.0, 1.0])
    assert [m for m, _ in points] == [-1.0, 0.0, 1.0] and all(0 <= acc <= 1 for _, acc in points)
    assert points[1][1] == 0.0  # at m = 0 no pair gains anything: the margin is exactly 0


def test_close_stops_runs_and_removes_files(ready):
    run = ready.start_run(ready.default_config(max_steps=10_000, **QUICK))
    while run.step < 1:
        time.sleep(0.02)
    folder = ready.export(run.name).safetensors.parent.parent
    ready.close()
    wait(run)
    assert run.status == "stopped" and not folder.exists()


@pytest.mark.parametrize("method", ["caa", "sas"])
def test_baselines_are_computed_runs(ready, method):
    ready.set_method(method)
    run = ready.start_run(ready.default_config())
    wait(run)
    assert run.status == "finished", run.error
    assert run.vector.method == method and run.history == [] and "computed in one pass" in run.describe()
    assert run.vector.kind == ("dense" if method == "caa" else "sparse") and run.vector.layer == 1


def test_evaluate_sweeps_every_chosen_vector(ready, monkeypatch):
    ready.set_method("caa")
    caa = ready.start_run(ready.default_config())
    ready.set_method("yapo")
    yapo = ready.start_run(ready.default_config(max_steps=3, **QUICK))
    wait(caa), wait(yapo)
    curves = ready.evaluate([caa.name, yapo.name], "preference", [0.0, 1.0])
    assert [label for label, _ in curves] == [caa.name, yapo.name]
    assert all(points[0] == (0.0, 0.0) for _, points in curves)  # m = 0 gains nothing
    (label, points), = ready.evaluate([yapo.name], "generation", [0.0, 1.0])
    pairs = S_tasks.evenly_spaced(yapo.task.test.pairs, 64)
    unsteered = generation_accuracy(ready.bundle.model, ready.bundle.tokenizer, [p.prompt for p in pairs],
                                    [p.chosen for p in pairs])
    assert label == yapo.name and [m for m, _ in points] == [0.0, 1.0] and points[0][1] == unsteered
    seen = []
    import yapo_core.evaluation as ev
    monkeypatch.setattr(ev, "generation_accuracy", lambda *a, **k: seen.append(k["steer_positions"]) or 0.5)
    ready.evaluate([yapo.name], "generation", [1.0], steer_positions="prompt")
    ready.evaluate([yapo.name], "generation", [1.0])
    assert seen == ["prompt", "all"]
    assert ready.metrics_for([yapo.name]) == {"preference": "test", "generation": "test", "fluency": "test"}
    with pytest.raises(SettingsError, match="MCQ accuracy .* cannot score file · pairs.jsonl: it needs multiple-choice "
                                            "pairs.*Metrics for this task: held-out preference accuracy .*, generation"):
        ready.evaluate([yapo.name], "mcq", [0.0, 1.0])  # the test answers are sentences
    with pytest.raises(SettingsError, match="at least one vector"):
        ready.evaluate([], "preference", [1.0])
    with pytest.raises(SettingsError, match="metric 'accuracy' is unknown; use one of preference, mcq"):
        ready.evaluate([yapo.name], "accuracy", [1.0])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="cais/mmlu"):  # not the demo model: MMLU, which needs the Hub
        ready.capability([yapo.name])
    with pytest.raises(SettingsError, match="at least one vector to check"):
        ready.capability([])


def test_an_environment_variable_picks_the_default_preset(catalog, monkeypatch):
    assert catalog.default_key == "demo"
    monkeypatch.setenv("YAPO_DEFAULT_PRESET", "gemma-2-2b-it")
    assert catalog.default_key == "gemma-2-2b-it"
    monkeypatch.setenv("YAPO_DEFAULT_PRESET", "nope")
    with pytest.raises(SettingsError, match="preset 'nope' is unknown"):
        catalog.default_key


def test_presets_carry_their_own_training_defaults(catalog):
    from dataclasses import replace

    from yapo_core.data import PairSet, PreferencePair
    from yapo_core.demo import OPEN_TRAINING, OPEN_TRAINING_DENSE, TRAINING

    session = S_session.Session(catalog=catalog)
    assert session.training_defaults() == {}  # nothing loaded: the public runs' defaults
    assert session.default_config().lr == 5e-4
    session.preset = catalog.preset("demo")  # the demo world recommends its own settings
    assert session.training_defaults() == TRAINING
    config = session.default_config(batch_size=2)
    assert (config.lr, config.max_steps, config.batch_size) == (TRAINING["lr"], TRAINING["max_steps"], 2)
    # ... which depend on the loaded task: open answers train with OPEN_TRAINING's fewer steps.
    # MCQ answers that give the option's text first are text to steer, and train like open answers.
    mcq = PreferencePair("Which one?\nA. Tea\nB. Coffee\nAnswer:", "B", "A")
    text_first = PreferencePair(mcq.prompt, "Coffee, option B.", "Tea, option A.")
    for pair, expected in ((PreferencePair("What do you drink?", "Coffee.", "Tea."), OPEN_TRAINING), (mcq, TRAINING),
                           (text_first, OPEN_TRAINING)):
        pairs = PairSet([pair], "preference", {}, "test")
        session.task = S_tasks.Task("t", pairs, pairs)
        assert session.training_defaults() == {**expected, "epochs": expected["max_steps"]}  # one step an epoch
    assert OPEN_TRAINING["max_steps"] < TRAINING["max_steps"]
    assert max(OPEN_TRAINING["lr"], TRAINING["lr"]) <= 20 * 5e-4  # within 20x of the public runs' rate
    session.set_method("bipo")  # a dense vector has its own rate for open answers
    assert session.training_defaults()["lr"] == OPEN_TRAINING_DENSE["lr"] <= 20 * 5e-4
    session.set_method("yapo")
    session.task = None
    session.preset = replace(catalog.preset("gpt2-small"), train={"lr": 1e-3})
    assert session.default_config().lr == 1e-3 and session.default_config().batch_size == 4
    session.preset = catalog.preset("gemma-2-2b-it")
    assert session.default_config().lr == 5e-4


def test_demo_tasks_carry_their_splits_caveats_and_training_defaults(monkeypatch, tmp_path, catalog):
    from yapo_core.demo import (
        OPEN_TRAINING,
        OPEN_TRAINING_BY_TASK,
        OPEN_TRAINING_DENSE,
        OPEN_TRAINING_DENSE_BY_TASK,
        TRAINING,
    )

    monkeypatch.setenv("YAPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("YAPO_DEMO_SIZE", "mini")
    session = S_session.Session(catalog=catalog)
    session.preset = catalog.preset("demo")
    behaviour = session.load_task(S_tasks.TaskSpec("demo", name="power-seeking"))
    assert set(behaviour.metrics()) >= {"behaviour", "preference"} and behaviour.metrics()["behaviour"] == "test_infer"
    assert "A/B behaviour rate" in behaviour.caveat and "demo-targets.md" in behaviour.caveat
    without_epochs = lambda: {k: v for k, v in session.training_defaults().items() if k != "epochs"}  # noqa: E731
    assert without_epochs() == OPEN_TRAINING  # open answers
    culture = session.load_task(S_tasks.TaskSpec("demo", name="culture-egypt", localization="nolocalized"))
    assert culture.caveat == "" and without_epochs() == TRAINING  # MCQ
    # the baselines carry their own caveat, after the task's; the trained methods none of their own
    assert culture.caveat_for("yapo") == culture.caveat_for("bipo") == ""
    assert culture.caveat_for("caa") == culture.caveat_for("sas") == caveats.CULTURE_BASELINES["mcq"]
    assert behaviour.caveat_for("yapo") == behaviour.caveat
    assert behaviour.caveat_for("sas") == f"{behaviour.caveat} {caveats.BEHAVIOUR_BASELINES}"
    open_task = session.load_task(S_tasks.TaskSpec("demo", name="culture-egypt", localization="nolocalized", form="open_ended"))
    assert without_epochs() == OPEN_TRAINING_BY_TASK["culture"] != OPEN_TRAINING  # a culture's open answers: longer
    assert open_task.caveat_for("caa") == caveats.CULTURE_BASELINES["open_ended"] != culture.caveat_for("caa")
    # A run with the app's defaults lasts max_steps, as the measured runs do, not 20 epochs' worth.
    config = session.default_config()
    per_epoch = math.ceil(len(session.task.train) / config.batch_size)
    assert per_epoch * (config.epochs - 1) < config.max_steps <= per_epoch * config.epochs
    # Comparing the methods gives BiPO the demo's dense rate, YaPO the sparse one.
    seen = {}
    monkeypatch.setattr(S_session, "compare_methods", lambda *a, **k: seen.update(k, args=a))
    session.load_preset(catalog.preset("demo"))
    session.compare("preference", [0.0, 1.0], methods=("yapo", "bipo", "caa"), max_steps=3)
    shared = seen["args"][8]  # the train_config every method starts from: the selected method's (YaPO)
    assert (shared["lr"], shared["max_steps"]) == (OPEN_TRAINING["lr"], 3) and shared["epochs"] >= 3
    assert set(seen["method_configs"]) <= {"bipo"}  # only what differs from YaPO's, and only for BiPO
    assert {**shared, **seen["method_configs"].get("bipo", {})}["lr"] == OPEN_TRAINING_DENSE["lr"]
    session.compare("preference", [0.0, 1.0], methods=("yapo", "bipo"))  # the steps of each method's own settings
    assert seen["args"][8]["max_steps"] == OPEN_TRAINING_BY_TASK["culture"]["max_steps"]
    bipo = {**seen["args"][8], **seen["method_configs"]["bipo"]}  # BiPO's own settings for a culture's open answers
    assert (bipo["max_steps"], bipo["batch_size"]) == tuple(OPEN_TRAINING_DENSE_BY_TASK["culture"][k] for k in ("max_steps", "batch_size"))
    assert OPEN_TRAINING_DENSE_BY_TASK["culture"] != OPEN_TRAINING_DENSE
    # The capability check asks all the world's general questions, as `yapo compare` and the
    # evaluation script do: not the first ones only (sums, nothing else).
    from yapo_core.demo import corpus

    bundle = session.require_ready()
    measure, what = S_session.ev.demo_capability(bundle.model, bundle.tokenizer)
    assert what == f"demo general questions ({len(corpus.general_facts())})"
    assert seen["args"][5] is not None  # compare measures it too


def test_spread_takes_evenly_spaced_items_in_order():
    assert S_tasks.evenly_spaced(range(10), 20) == list(range(10))
    assert S_tasks.evenly_spaced(range(10), 5) == [0, 2, 4, 6, 8]
    grouped = ["localized"] * 50 + ["nolocalized"] * 50  # a test split grouped by localization
    assert set(S_tasks.evenly_spaced(grouped, 8)) == {"localized", "nolocalized"}
    assert len(S_tasks.evenly_spaced(grouped, 8)) == 8


def test_raw_values_from_the_pages_are_checked(ready):
    run = ready.start_run(ready.default_config(max_steps=2, **QUICK))
    wait(run)
    label = run.name
    with pytest.raises(SettingsError, match="multiplier None is not a number"):
        ready.export(label, None)
    with pytest.raises(SettingsError, match="lens_k=-3 must be a whole number"):
        ready.features(label, lens_k=-3)
    with pytest.raises(SettingsError, match="max_items=2.5 must be a whole number"):
        ready.evaluate([label], "preference", [0, 1], max_items=2.5)
    with pytest.raises(SettingsError, match="max new tokens='5' must be a whole number"):
        next(ready.generate_stream(label, "hi", [0, 1], max_new_tokens="5"))
    with pytest.raises(SettingsError, match="enter a prompt"):
        next(ready.generate_stream(label, 5, [0, 1]))
    with pytest.raises(SettingsError, match="upload a .safetensors vector file first"):
        ready.load_vector_file(None)
    with pytest.raises(SettingsError, match="must be a TrainConfig, not a dict"):
        ready.start_run({"max_steps": 1})
    with pytest.raises(SettingsError, match="test_fraction=1.0 must be a finite number above 0 and at most 0.9"):
        ready.load_task(S_tasks.TaskSpec("file", path=str(ready.task.train.source), test_fraction=1.0))


def test_a_custom_sae_is_a_release_or_a_folder_not_both(tiny_world, catalog):
    s = S_session.Session(catalog=catalog)
    with pytest.raises(SettingsError, match="either an SAE release and id or a local SAE folder, not both"):
        s.load_preset(catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir),
                      sae_release="gpt2-small-res-jb", sae_id="blocks.8.hook_resid_pre")


def test_compare_methods_on_the_loaded_task(ready):
    # the step count ends each training, however few pairs the fitting split leaves per epoch
    per_epoch = math.ceil(0.8 * len(ready.task.train) / ready.default_config().batch_size)
    steps = ready.default_config().epochs * per_epoch + 5
    result = ready.compare("preference", [0.0, 1.0], ["yapo"], max_steps=steps)
    assert len(result.results[0].loss_curve) == steps
    result = ready.compare("preference", [0.0, 1.0], ["yapo", "caa"], max_steps=2)
    assert [r.method for r in result.results] == ["yapo", "caa"] and result.metric == "preference"
    assert result.settings["n_validation"] >= 1 and result.settings["train_config"]["max_steps"] == 2
    assert all(r.chosen_multiplier in (0.0, 1.0) and r.validation_accuracy for r in result.results)
    assert result.task == ready.task.label
    with pytest.raises(SettingsError, match="MCQ accuracy .* cannot score"):
        ready.compare("mcq", [0.0, 1.0], ["caa"])


def test_a_method_comparison_holds_the_shared_model_one_step_at_a_time_and_can_be_stopped(ready):
    """Other users' requests use the model between the comparison's steps, instead of waiting for the
    whole comparison; Stop (or the page closing) ends it, and its training slot is free again."""
    import threading

    said, out = [], {}

    def compare():
        try:
            out["result"] = ready.compare("preference", [0.0, 1.0], ["yapo"], max_steps=100_000, on_progress=said.append)
        except SettingsError as exc:
            out["error"] = str(exc)

    worker = threading.Thread(target=compare)
    worker.start()
    while not any("building" in m for m in said):
        time.sleep(0.01)
    time.sleep(0.3)
    assert worker.is_alive() and ready.limiter.full()  # training, in a training slot
    got = ready.bundle.lock.acquire(timeout=2.0)  # another user's request, between two steps
    if got:
        ready.bundle.lock.release()
    ready.stop_all()
    worker.join(60)
    assert got and out == {"error": "the method comparison was stopped."} and not ready.limiter.full()


def test_the_capability_check_measures_each_model_unsteered_once(monkeypatch):
    """Several vectors of one model: the unsteered measure (which no vector changes) is taken once."""
    import threading
    from types import SimpleNamespace

    session = S_session.Session()
    bundle = SimpleNamespace(model=object(), tokenizer=None, sae=None, lock=threading.Lock())
    for label in ("a", "b", "c"):
        session.files[label] = S_session.VectorEntry(label, None, bundle, None, "file")
    asked = []
    monkeypatch.setattr(S_session.ev, "capability_measure",
                        lambda model, tok, n: asked.append(model) or (lambda: 0.5, "demo general questions"))
    given = []

    def change(measure, model, vector, multiplier, sae, unsteered=None):
        given.append(unsteered)
        return {"unsteered": measure() if unsteered is None else unsteered, "steered": 0.4, "change": -0.1}

    monkeypatch.setattr(S_session.ev, "capability_change", change)
    rows = session.capability(["a", "b", "c"])
    assert given == [None, 0.5, 0.5] and [r["unsteered"] for r in rows] == [0.5] * 3
    assert asked == [bundle.model]  # the measure (MMLU's questions, for a hub model) is made once per model


def test_a_tasks_notes_name_their_split_and_the_setting_that_changes_them(tmp_path):
    from conftest import dcl_with_an_answered_localized_prompt

    from pages.common import in_app_terms
    from yapo_core.data import PairSet, PreferencePair, load_pairs

    path = dcl_with_an_answered_localized_prompt(tmp_path)
    loaded = load_pairs(path, localization="both")
    note = "1 of 2 pair(s) have the same chosen and rejected answer: as given they teach nothing"
    dcl = S_tasks.Task("t", loaded, PairSet(loaded.pairs, "dcl", {}, "x"))
    (shown,) = [in_app_terms(n) for n in dcl.notes()]
    assert shown.startswith(f"train split: {note} (the localized prompts, which the model answers right unsteered: "
                            "Prompts “nolocalized” leaves them out)")
    assert shown.index("“nolocalized”") < shown.index("multiple-choice")  # the hint by what it explains
    assert note not in dcl.describe()  # the notes are shown as warnings of their own, not inside the success line
    same = [PreferencePair("Where?", "Koshari.", "Koshari."), PreferencePair("What?", "Tea.", "Coffee.")]
    plain = S_tasks.Task("t", PairSet(same, "pairs", {}, "x"), PairSet(same, "pairs", {}, "x", notes=[note]))
    assert plain.notes() == [f"test split: {note}"]


def test_a_metric_measured_on_different_splits_for_the_vectors_chosen_names_both(monkeypatch):
    from types import SimpleNamespace

    tasks = {"a": SimpleNamespace(metrics=lambda: {"mcq": "test_infer", "preference": "test"}),
             "b": SimpleNamespace(metrics=lambda: {"mcq": "test", "preference": "test", "generation": "test"})}
    monkeypatch.setattr(S_session.Session, "entry", lambda self, label: SimpleNamespace(task=tasks[label]))
    session = object.__new__(S_session.Session)
    assert session.metrics_for(["a", "b"]) == {"mcq": "test_infer / test", "preference": "test"}
    assert session.metrics_for(["b"]) == {"mcq": "test", "preference": "test", "generation": "test"}


@pytest.mark.parametrize("method", ["caa", "sas", "yapo"])
def test_every_method_runs_at_an_sae_on_the_input_of_the_first_block(tiny_world, catalog, tmp_path, method):
    """sae-lens ships SAEs at ``blocks.0.hook_resid_pre`` (GPT-2 small's), the output of no block."""
    from pages import setup

    folder = tmp_path / "sae0"
    make_sae(layer=0, position="pre").save_model(folder)
    s = S_session.Session(catalog=catalog)
    try:
        s.load_preset(catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(folder))
        assert "steer **the input of block 0**" in setup.bundle_summary(s)
        s.load_task(S_tasks.TaskSpec("file", path=str(tiny_world.data_file), test_fraction=0.25))
        s.set_method(method)
        run = s.start_run(s.default_config(max_steps=2, **QUICK))
        wait(run)
        assert run.status == "finished", run.error
        assert run.vector.hook_name == "blocks.0.hook_resid_pre"
    finally:
        s.close()


@pytest.mark.parametrize("chunks", [False, True])
def test_a_runs_notes_reach_the_page_whether_it_trains_in_one_go_or_in_chunks(ready, monkeypatch, chunks):
    if chunks:
        monkeypatch.setenv("YAPO_TRAIN_CHUNK_SECONDS", "0.001")  # one step per chunk, each with a Trainer of its own
    run = ready.start_run(ready.default_config(max_steps=4, lr=0.05, warmup_steps=100, batch_size=4, seed=0))
    wait(run, 120)
    assert run.status == "finished", run.error
    assert [n.split(" is longer")[0] for n in run.notes] == ["warmup_steps=100"]


def test_an_upload_with_too_little_to_learn_from_is_refused_or_flagged(tmp_path):
    rows = [("Q1?", "a", "b"), ("Q2?", "a", "a"), ("Q3?", "c", "c")]
    same = tmp_path / "same.csv"
    pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"]).to_csv(same, index=False)
    with pytest.raises(DataError, match="'same.csv' has 1 usable pair"):  # two of three teach nothing
        S_tasks.load_task(S_tasks.TaskSpec("file", path=str(same)))
    few = tmp_path / "few.csv"
    pd.DataFrame([*rows, ("Q4?", "d", "e"), ("Q5?", "f", "g")], columns=["prompt", "chosen", "rejected"]).to_csv(
        few, index=False)
    task = S_tasks.load_task(S_tasks.TaskSpec("file", path=str(few)))
    notes = task.notes()
    assert notes[0].startswith("the file: 2 of 5 pair(s) have the same chosen and rejected answer")  # the file's count
    assert any(n.startswith("the file: only 4 training pair(s) after 1 held out") for n in notes)


def test_the_eta_is_the_steps_left_at_the_pace_so_far():
    run = S_runs.Run("1", "run", None, None, None, None)
    run.status, run._running_since, run._finished_at = "running", 100.0, 110.0  # 10 s for 2 steps
    run.trainer = SimpleNamespace(step=2, total_steps=10, history=[])
    assert run.eta() == 40.0 and "step 2/10, about 40 s left" in run.describe()


def test_mcq_accuracy_is_kept_where_it_is_measured_on_another_split_than_the_behaviour_rate():
    abcd = [PreferencePair("Q?\nA. x\nB. y\nC. z\nAnswer with the letter.", "C", "A")]
    ab = [PreferencePair("Q?\n(A) yes\n(B) no", "A", "B")]
    pairs = lambda p: PairSet(p, "x", {}, "x")  # noqa: E731
    task = S_tasks.Task("t", pairs(abcd), pairs(abcd), {"test_infer": pairs(ab)})
    assert task.metrics()["behaviour"] == "test_infer" and task.metrics()["mcq"] == "test"


def test_setup_lists_only_the_demo_tasks_it_can_load(monkeypatch, tmp_path):
    monkeypatch.setenv("YAPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("YAPO_DEMO_SIZE", "mini")
    S_tasks.ensure_demo_world(progress=False)
    kinds = S_tasks.demo_task_kinds()
    assert kinds["culture-egypt"] == "culture" and set(kinds.values()) == {"culture", "behaviour"}  # no "general"
