"""Page logic that needs no browser: rendering, parsing, error display, the app's assembly."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
import torch
from app_fixtures import tiny_world  # noqa: F401 (fixture)

import app
from pages import common, compare, evaluate, export, features, setup, train
from yapo_core import features as F
from yapo_core.errors import DataError, SAELoadError, SettingsError
from yapo_core.evaluation import METRICS
from yapo_studio.session import ExportResult, Session, TaskSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ctx():
    return common.AppContext.from_env()


@pytest.fixture(scope="module")
def trained(tiny_world, ctx):
    """A session with one finished 3-step YaPO run on the tiny world."""
    s = ctx.new_session()
    s.load_preset(ctx.catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir))
    s.load_task(TaskSpec("file", path=str(tiny_world.data_file)))
    run = s.start_run(s.default_config(max_steps=3, lr=0.05, warmup_steps=1))
    deadline = time.time() + 60
    while run.active and time.time() < deadline:
        time.sleep(0.05)
    assert run.status == "finished", run.error
    yield s
    s.close()


def test_app_help_lists_every_setting_and_starts_nothing(capsys, monkeypatch):
    monkeypatch.setattr(app, "build_app", lambda ctx: pytest.fail("--help built the app"))
    with pytest.raises(SystemExit) as stopped:
        app.main(["--help"])
    assert stopped.value.code == 0
    said = capsys.readouterr().out
    for variable in ("YAPO_HOST", "YAPO_PORT", "YAPO_CACHE_DIR", "YAPO_SESSION_GRACE_S"):
        assert variable in said
    assert "YAPO_PORT, else GRADIO_SERVER_PORT [default: 7860]" in said and "[default: assets/presets.json]" in said
    with pytest.raises(SystemExit):  # an argument the app does not take is refused, not ignored
        app.main(["--port", "8000"])


def test_the_app_assembles_and_listens_locally_by_default(ctx):
    demo = app.build_app(ctx)
    assert isinstance(demo, gr.Blocks)
    assert app.server_address({}) == ("127.0.0.1", 7860)
    assert app.server_address({"GRADIO_SERVER_NAME": "0.0.0.0"}) == ("0.0.0.0", 7860)
    assert app.server_address({"YAPO_HOST": "::1", "GRADIO_SERVER_NAME": "0.0.0.0", "YAPO_PORT": "8001"}) == ("::1", 8001)
    with pytest.raises(SystemExit, match="is not a port; give a number from 1 to 65535"):
        app.server_address({"YAPO_PORT": "eighty"})
    # Gradio's own minimum check names no field and leaves the page's outputs in an error state
    # (Train's Start stayed disabled): the pages check their numbers themselves
    numbers = [b for b in demo.blocks.values() if isinstance(b, gr.Number)]
    assert numbers and all(b.minimum is None and b.maximum is None for b in numbers), [b.label for b in numbers]


def test_context_reads_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("YAPO_HEAVY_JOBS", "3")
    monkeypatch.setenv("YAPO_TRAINING_JOBS", "2")
    ctx = common.AppContext.from_env()
    assert (ctx.heavy_jobs, ctx.limiter.slots) == (3, 2)
    a, b = ctx.new_session(), ctx.new_session()
    assert a is not b and a.store is b.store and a.limiter is b.limiter and a.runs is not b.runs
    monkeypatch.setenv("YAPO_HEAVY_JOBS", "many")
    with pytest.raises(SystemExit, match="YAPO_HEAVY_JOBS"):
        common.AppContext.from_env()


def test_a_page_that_comes_back_finds_its_session_and_a_closed_one_stops_its_runs(tiny_world, ctx, monkeypatch):
    """A reload, or Gradio's own reload after a dropped connection, is a new page with the browser's
    token: it gets its session back, runs and all, within the grace time. A page that does not
    come back has its runs stopped when the time is up."""
    from types import SimpleNamespace

    monkeypatch.setenv("YAPO_SESSION_GRACE_S", "0.5")
    tab = SimpleNamespace(session_hash="tab-1")
    s, token = ctx.open_session(None, tab)
    s.load_preset(ctx.catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir))
    s.load_task(TaskSpec("file", path=str(tiny_world.data_file)))
    run = s.start_run(s.default_config(max_steps=100_000, warmup_steps=1))
    ctx.end_session(tab)  # the connection drops ...
    again, same = ctx.open_session(token, SimpleNamespace(session_hash="tab-2"))  # ... and the page reloads
    assert again is s and same == token and run.active
    shown = setup.restored(again)  # Setup shows the model, the task and the method again
    assert shown[0].startswith("✓ **Loaded**") and shown[1].startswith("✓ **Task loaded**") and shown[3] == "yapo"
    assert shown[5] == "file"  # and the task's fields as it was asked, so Load task loads it again
    s.task_spec = TaskSpec("demo", name="power-seeking")  # as a demo task leaves it
    fields = dict(zip(setup.TASK_CONTROLS, setup.restored(again)[5:]))
    assert (fields["source"], fields["name"]) == ("demo", "power-seeking")
    other, other_token = ctx.open_session("not-a-token", SimpleNamespace(session_hash="tab-3"))
    assert setup.restored(other)[0].startswith(setup.NO_MODEL)  # a session without a model: only the status line
    assert other is not s and other_token != token  # a token nobody holds: a fresh session
    ctx.state_deleted(s)  # the first page's state, dropped by Gradio: the session is still held
    assert run.active
    ctx.end_session(SimpleNamespace(session_hash="tab-2"))  # closed for good
    time.sleep(0.1)
    assert run.active  # still waiting for the page
    run.join(timeout=60)
    assert run.status == "stopped"
    late, late_token = ctx.open_session(token, SimpleNamespace(session_hash="tab-4"))
    assert late is not s and late_token != token  # too late: a fresh session
    ctx.end_session(SimpleNamespace(session_hash="tab-2"))  # a second close is harmless
    monkeypatch.setenv("YAPO_SESSION_GRACE_S", "0")  # no grace: a closed page's runs stop at once
    t5 = SimpleNamespace(session_hash="tab-5")
    now, _ = ctx.open_session(None, t5)
    now.load_preset(ctx.catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir))
    now.load_task(TaskSpec("file", path=str(tiny_world.data_file)))
    quick = now.start_run(now.default_config(max_steps=100_000, warmup_steps=1))
    ctx.end_session(t5)
    quick.join(timeout=60)
    assert quick.status == "stopped"


def test_library_errors_become_user_messages_never_tracebacks():
    """A user's error is a message, and the page keeps what it shows (gr.skip(), where a raised
    error would cover every output with an "Error" badge); a defect is a short raised error."""
    @common.user_errors
    def fails(kind):
        raise {"yapo": DataError("column 'prompt' missing"), "page": gr.Error("Build the demo world first"),
               "bug": KeyError("x")}[kind]

    with pytest.warns(UserWarning, match="column &#x27;prompt&#x27; missing"):
        assert fails("yapo") == gr.skip()
    with pytest.warns(UserWarning, match="Build the demo world first"):
        assert fails("page") == gr.skip()
    with pytest.raises(gr.Error, match="Unexpected error \\(KeyError"):
        fails("bug")

    @common.user_errors
    def streams():
        yield 1
        raise SettingsError("enter a prompt")

    stream = streams()
    assert next(stream) == 1
    with pytest.warns(UserWarning, match="enter a prompt"):
        assert next(stream) == gr.skip()
    with pytest.raises(StopIteration):
        next(stream)
    with pytest.raises(gr.Error, match="reload the page"):
        common.need(None)

    @common.user_errors(cleared=lambda: ("", None))
    def shows(ok):  # an output that would pass for the failed request's result is cleared instead
        if not ok:
            raise SettingsError("no such vector")
        return "card", 1

    assert shows(True) == ("card", 1)
    with pytest.warns(UserWarning, match="no such vector"):
        assert shows(False) == ("", None)

    @common.user_errors(cleared=lambda name, ok: (f"⚠ {name} was not loaded", None))
    def loads(name, ok):  # what replaces the outputs may name what the callback was asked for
        raise SettingsError("unreadable")

    with pytest.warns(UserWarning, match="unreadable"):
        assert loads("tasks.csv", False) == ("⚠ tasks.csv was not loaded", None)


def test_vector_dropdowns_keep_the_choice_or_take_the_newest(trained):
    label = next(iter(trained.vectors()))
    update, listed = common.vector_choices(trained, None)
    assert update["choices"] == [(label, label)] and update["value"] == label and listed == [label]
    assert common.vector_choices(trained, label, listed)[0]["value"] == label
    assert common.vector_choices(None, "gone") == (gr.update(choices=[], value=None), [])


def test_vector_lists_say_which_vectors_are_not_a_finished_runs():
    """A run stopped at its first step is a vector of one step: the lists say so, keeping its label as the value."""
    def run(name, status, trained=True):
        return SimpleNamespace(name=name, status=status, step=1, total_steps=600,
                               method=SimpleNamespace(trained=trained))

    runs = [run("a", "finished"), run("b", "stopped"), run("c", "running"), run("d", "failed"),
            run("e", "stopped", trained=False)]
    session = SimpleNamespace(run_list=lambda: runs)
    shown = dict((value, text) for text, value in common.vector_options(session, ["a", "b", "c", "d", "e", "file"]))
    assert shown["a"] == "a" and shown["e"] == "e" and shown["file"] == "file"
    assert shown["b"] == "b (stopped at step 1 of 600)"
    assert shown["c"].startswith("c (training: its vector at step 1 of 600")
    assert shown["d"].startswith("d (failed; its last good vector, step 1 of 600")


class Listed:
    """A session as the vector pages see it: its vectors' labels, in the order they came."""

    def __init__(self, labels):
        self.labels = labels

    def vectors(self):
        return dict.fromkeys(self.labels)

    def metrics_for(self, labels):
        return {}


def test_a_page_takes_the_vector_added_since_even_when_it_is_not_the_last():
    # run A started before file F was loaded, but A's first vector appeared only after the page listed F
    assert common.vector_choices(Listed(["A", "F"]), "F", ["F"])[0]["value"] == "A"
    assert common.vector_choices(Listed(["A", "F", "B"]), "A", ["A"])[0]["value"] == "B"
    assert evaluate.vector_checklist(Listed(["A", "F"]), ["F"], None, ["F"])[0]["value"] == ["A"]


def file_session(tiny_world, trained, ctx):
    """A trained vector's exported file, and a new session on its model and task that loads vector files."""
    path = trained.export(next(iter(trained.vectors())), multiplier=1.0).safetensors
    s = ctx.new_session()
    s.load_preset(ctx.catalog.preset("custom"), model=str(tiny_world.model_dir), sae_path=str(tiny_world.sae_dir))
    s.load_task(TaskSpec("file", path=str(tiny_world.data_file)))
    return path, s


def test_pages_select_a_vector_added_since_they_last_listed(tiny_world, trained, ctx):
    """After a new run or file, opening Compare, Features, Export or Evaluate uses it, not the one picked before."""
    path, s = file_session(tiny_world, trained, ctx)
    try:
        first = s.load_vector_file(path).label
        update, listed = common.vector_choices(s, None, [])
        assert update["value"] == first and listed == [first]
        second = s.load_vector_file(path).label
        update, now = common.vector_choices(s, first, listed)
        assert update["value"] == second and now == [first, second]
        assert common.vector_choices(s, first, now)[0]["value"] == first  # a pick made once both were listed stays
        checked, _, shown = evaluate.vector_checklist(s, [first], "preference", listed)
        assert checked["value"] == [second] and shown == [first, second]
        assert evaluate.vector_checklist(s, [first], "preference", now)[0]["value"] == [first]
        assert evaluate.vector_checklist(s, [], "preference", now)[0]["value"] == [first, second]
        s.delete(second)
        assert common.vector_choices(s, second, now)[0]["value"] == first
        third = s.load_vector_file(path).label  # a removed vector's label is not given again, so this one is new
        assert third not in (first, second) and common.vector_choices(s, first, now)[0]["value"] == third
    finally:
        s.close()


def test_remove_asks_twice_before_it_removes_a_vector(tiny_world, trained, ctx):
    path, s = file_session(tiny_world, trained, ctx)
    try:
        first, second = s.load_vector_file(path).label, s.load_vector_file(path).label
        with pytest.raises(SettingsError, match="choose the run or vector file to remove"):
            train.remove_click(s, None, None)
        *_, button, armed = train.remove_click(s, first, None)  # the first click arms the button, removes nothing
        assert armed == first and button["value"] == f"Click again to remove “{first}”" and first in s.vectors()
        *_, button, armed = train.remove_click(s, second, first)  # armed for another vector: arms for this one
        assert armed == second and {first, second} <= set(s.vectors())
        *_, which, button, armed = train.remove_click(s, second, second)  # the second click removes it
        assert armed is None and button["value"] == train.REMOVE and second not in s.vectors()
        assert which["choices"] == [first] and first in s.vectors()
    finally:
        s.close()


def test_evaluate_offers_the_metrics_of_the_chosen_vectors_tasks(trained):
    label = next(iter(trained.vectors()))
    vectors, metric, _ = evaluate.vector_checklist(trained, None, "mcq")
    assert vectors["value"] == [label]
    # open answers: no MCQ or A/B metric; the choice falls back to the task's own metric, not preference accuracy
    assert [key for _, key in metric["choices"]] == ["preference", "generation", "fluency"] and metric["value"] == "generation"
    assert metric["choices"][1][0].endswith("· test")
    assert evaluate.metric_choices(trained, [label], "generation")["value"] == "generation"
    # no vector checked: the loaded task's metrics, what a method comparison on it measures
    assert [key for _, key in evaluate.metric_choices(trained, [], "mcq")["choices"]] == list(trained.task.metrics())
    assert "mcq" not in trained.task.metrics()
    assert len(evaluate.metric_choices(None, [])["choices"]) == len(METRICS) == 8  # nothing chosen: all of them
    assert metric["info"] == ""  # one vector: nothing is left out (and an earlier line is cleared, not kept)


def test_evaluate_says_which_metrics_two_tasks_vectors_do_not_share():
    own = {"mcq": {"preference": "test", "mcq": "test"}, "ab": {"preference": "test", "behaviour": "test_infer"}}
    session = SimpleNamespace(task=None, metrics_for=lambda labels: {
        k: v for k, v in own[labels[0]].items() if all(k in own[label] for label in labels)})
    both = evaluate.metric_choices(session, ["mcq", "ab"], "mcq")
    assert [key for _, key in both["choices"]] == ["preference"] and both["value"] == "preference"
    assert "Tick only the vectors of one task for MCQ accuracy, behaviour rate." == both["info"].split(". ", 1)[1]
    alone = evaluate.metric_choices(session, ["ab"], "preference")
    assert alone["value"] == "preference" and alone["info"] == ""  # a metric the user chose stays chosen
    assert evaluate.metric_choices(session, ["ab"], "mcq")["value"] == "behaviour"  # else the task's own metric


def test_a_method_s_caveat_for_the_task_shows_on_train_and_under_a_comparison(trained):
    task = trained.task
    try:
        task.method_caveats = {"caa": "CAA <hardly> steers this task."}
        assert "⚠" not in train.setup_summary(trained)  # the session's method is YaPO
        trained.set_method("caa")
        assert "⚠ CAA &lt;hardly&gt; steers this task." in train.setup_summary(trained)
        assert evaluate.comparison_note(trained, ["yapo", "caa"]) == "⚠ CAA &lt;hardly&gt; steers this task."
        task.method_caveats["sas"] = task.method_caveats["caa"]  # one note for both, shown once
        assert evaluate.comparison_note(trained, ["caa", "sas"]).count("⚠") == 1
        assert evaluate.comparison_note(trained, ["yapo", "bipo"]) == ""
    finally:
        task.method_caveats = {}
        trained.set_method("yapo")


def test_a_method_comparison_is_cleared_when_another_task_is_loaded(trained):
    task = trained.task.label
    assert evaluate.comparison_for(trained, task) == ({"__type__": "update"},) * 2 + (task, {"__type__": "update"})
    assert evaluate.comparison_for(trained, None)[2] is None  # nothing compared yet: nothing to clear
    cleared = ({"__type__": "update", "value": None, "visible": False}, None, None, "")  # an empty table is hidden
    assert evaluate.comparison_for(trained, "culture · egypt (demo)") == cleared
    assert evaluate.comparison_for(None, task) == cleared


def test_multipliers_are_parsed_and_bounded():
    assert common.parse_multipliers("1, -2; 0,1") == [-2.0, 0.0, 1.0]
    for bad in ("", "one, two", "1,2,3,4,5,6,7,8,9,10", "50", "nan", "1, inf"):
        with pytest.raises(SettingsError):
            common.parse_multipliers(bad)
    with pytest.raises(SettingsError, match="give 1 to 9 multipliers between −10 and 10"):
        common.parse_multipliers("-11, 1")
    assert common.parse_multipliers("-10, 10") == [-10.0, 10.0]


def test_compare_says_where_steering_applies(trained):
    label = next(iter(trained.vectors()))
    text = compare.where_steering_applies(trained, label)
    assert "**the output of block 1**" in text and "blocks.1.hook_resid_post" in text
    assert "every prompt token" in text and "every generated token" in text and "dec(relu(enc(h) + m·v))" in text
    assert "every token" in compare.where_steering_applies(None, None)
    prompts = compare.prompt_choices(trained, label)["choices"]
    assert prompts and all(len(shown) <= 90 and "\n" not in shown for shown, _ in prompts)
    # a picked test prompt shows its pair's answers, to read the steered one against
    pair = trained.task.test.pairs[0]
    shown = compare.expected_answer(trained, label, pair.prompt)
    assert f"**chosen** answer (the vector's target): {compare.esc(pair.chosen)[:119]}" in shown and "**rejected**" in shown
    assert compare.expected_answer(trained, label, "a prompt of my own") == ""
    # after generating on it, which of the pair's answers each shown answer gives, as the metrics read it
    note = compare.verdict_note(trained, label, pair.prompt, {0.0: pair.rejected, 1.0: pair.chosen})
    assert note.startswith("**Against the test pair:** unsteered ") and "the rejected answer" in note
    assert "at m = +1.0 " in note and note.endswith("the chosen answer ✓.")
    assert compare.verdict_note(trained, label, "a prompt of my own", {0.0: pair.chosen}) == ""


def test_compare_says_when_the_steered_answer_derails(trained):
    label = next(iter(trained.vectors()))
    problem = trained.fluency_problem(label, ",,,,,,,,,,,,", "Koshari. It is the classic dish.", 64)
    assert problem.startswith("it repeats ','")
    assert trained.fluency_problem(label, ",,,,,,,,,,,,", ",,,,,,,,,,,,", 64) is None  # unsteered loops too
    assert trained.fluency_problem(label, "Koshari. It is the classic dish.", "Burgers.", 64) is None
    note = compare.fluency_note(problem, 1.0, "all")
    assert "does not read like text" in note and "m = +1.0" in note and "prompt tokens only" in note
    assert "prompt tokens only" not in compare.fluency_note(problem, 1.0, "prompt")
    assert compare.fluency_note(None, 1.0, "all") == ""


def test_the_grid_notes_each_steered_answer_that_derails(trained, monkeypatch):
    label = next(iter(trained.vectors()))
    seen = []
    monkeypatch.setattr(trained, "fluency_problem", lambda lab, reply, plain, n: seen.append(plain) or "it loops")
    settings = dict(max_new_tokens=8, do_sample=False, temperature=1.0, seed=0, steer_positions="all")
    *streamed, final = compare.grid_rows(trained, label, "Do you like tea?", [1.0, 2.0], settings)
    assert list(final.columns) == ["multiplier", "answer", "note"] and list(final["multiplier"]) == [1.0, 2.0]
    assert list(final["note"]) == ["⚠ does not read like text: it loops"] * 2
    unsteered = list(trained.generate_stream(label, "Do you like tea?", [0.0], **settings))[-1][0.0]
    assert seen == [unsteered] * 2  # judged against the unsteered answer, generated though the grid did not ask for it
    assert list(list(compare.grid_rows(trained, label, "Hi", [0.0], settings))[-1]["note"]) == [""]
    pair = trained.task.test.pairs[0]  # a test prompt: each row says which of its pair's answers it gives
    monkeypatch.setattr(trained, "generate_stream", lambda *a, **k: iter([{0.0: pair.rejected, 1.0: pair.chosen}]))
    final = list(compare.grid_rows(trained, label, pair.prompt, [0.0, 1.0], settings))[-1]
    assert final["note"][0].endswith("the rejected answer")
    assert final["note"][1].endswith("the chosen answer ✓; ⚠ does not read like text: it loops")


def test_export_note_states_the_dropped_share(tmp_path):
    result = ExportResult(tmp_path / "v.safetensors", tmp_path / "v.m+1.gguf", None, 0.25, 15, 1.0)
    note = export.export_note(result, "sparse")
    assert "Not exact" in note and "25.0%" in note and "direction.15" in note and "m = +1" in note
    exact = ExportResult(tmp_path / "v.safetensors", tmp_path / "v.gguf", None, 0.0, 15, 1.0)
    assert "exact at m = +1" in export.export_note(exact, "sparse")
    assert "Not exact" not in export.export_note(exact, "dense")
    failed = ExportResult(tmp_path / "v.safetensors", None, "cannot steer block 0", None, 0, 1.0)
    assert "No GGUF: cannot steer block 0" in export.export_note(failed, "dense")


def test_setup_says_each_method_in_a_sentence():
    from yapo_core.methods import METHODS

    for method in METHODS.values():
        text = setup.method_text(method)
        assert text[0].isupper() and text.endswith(f"applied as `{method.formula}`."), text


def test_feature_cards_escape_tokens_and_scale_highlights():
    lens = F.LogitLens([F.TokenScore("<script>", 5, 1.5)], [F.TokenScore("a\nb", 6, -1.0)])
    activity = F.LatentActivity(index=7, n_tokens=10, density=0.2, max_value=2.0, mean_active=1.0,
                                examples=[F.ActivationExample(0, ["x", "<b>"], [0.0, 2.0], 1)],
                                histogram_counts=[1, 1], histogram_edges=[0.0, 1.0, 2.0])
    card = F.LatentCard(7, -0.5, "value", lens, activity, "https://www.neuronpedia.org/m/s/7")
    html = features.latent_card_html(card, explanation="tea & coffee")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    assert "a⏎b" in html and "v = -0.5" in html and "tea &amp; coffee" in html
    assert "rgba(234,88,12,1.00)" in html and "20.0%" in html and "neuronpedia.org/m/s/7" in html
    # the histogram's ends are its least and largest activation; each bar names its range
    assert "<span class='hist-end'>0</span>" in html and "<span class='hist-end'>2</span>" in html
    assert "mean when active 1 · histogram <span class='hist-wrap'>" in html  # its first end is not read with the mean
    assert "title='1 token in [0, 1)'" in html and "title='1 token in [1, 2]'" in html  # the last bin is closed
    silent = F.LatentActivity(index=9, n_tokens=10, density=0.0, max_value=0.0, mean_active=0.0, examples=[],
                              histogram_counts=[], histogram_edges=[])
    quiet = features.latent_card_html(F.LatentCard(9, 6.2, "value", lens, silent, None))
    assert "never fires on the 10 tokens" in quiet and "mean when active" not in quiet  # not "fires on 0.0% · max 0"
    assert "only the vector" not in features.latent_card_html(F.LatentCard(9, 0.3, "cosine", lens, silent, None))  # dense
    local = F.LatentCard(8, 0.1, "cosine", lens, None, None)
    assert "Neuronpedia" not in features.latent_card_html(local) and "cos = +0.100" in features.latent_card_html(local)
    linked = F.LatentCard(7, 0.2, "cosine", lens, None, "https://www.neuronpedia.org/x/7")
    assert "Neuronpedia ↗" in features.latent_card_html(linked)
    # an SAE without pages says so once above its cards, not on each card
    unlisted = features.cards_html(F.FeatureReport(vector=None, latents=[local, local], n_texts=0))
    assert unlisted.count("no Neuronpedia pages") == 1
    assert "no Neuronpedia pages" not in features.cards_html(F.FeatureReport(vector=None, latents=[linked], n_texts=0))
    empty = F.FeatureReport(vector=None, latents=[], n_texts=0)
    assert "vector is zero" in features.cards_html(empty)


def test_feature_page_renders_a_real_report(trained):
    label = next(iter(trained.vectors()))
    report = trained.features(label, k=4)
    html = features.cards_html(report)
    assert html.count("class='latent-card'") == len(report.latents) > 0
    assert "The whole vector" in features.vector_card_html(report.vector, "blocks.1.hook_resid_post")
    assert len(features.bars(report).data[0].y) == len(report.latents)
    with pytest.raises(SAELoadError, match="no Neuronpedia pages"):
        F.explain_report(report)


def test_train_page_status_and_polling(trained):
    html = train.runs_html(trained)
    assert "finished" in html and "step 3/3" in html and "loss" in html and "run-note" not in html
    (run,) = trained.run_list()
    run.trainer.notes.append("warmup_steps=100 is longer than the run of 3 steps: ...")
    try:
        assert "⚠ Warm-up steps = 100 is longer than the run" in train.runs_html(trained)  # in the page's terms
    finally:
        run.trainer.notes.clear()
    status, figure, timer = train.snapshot(trained)
    assert timer.active is False and len(figure.data) == 5 and list(figure.data[0].x) == [1, 2, 3]
    # the timer redraws the curves only when they changed, at most every PLOT_SECONDS while a run is active
    status, figure, timer, drawn = train.tick(trained, None, now=100.0)
    assert "finished" in status and list(figure.data[0].x) == [1, 2, 3] and timer.active is False
    assert drawn == (train.curves_shown(trained), 100.0)
    assert train.tick(trained, drawn, now=101.0)[1] == gr.skip() and train.tick(trained, drawn)[3] == drawn
    one, two = (("1. YaPO", 5, "running"),), (("1. YaPO", 6, "running"),)
    assert train.redraw_due(two, (one, 100.0), active=True, now=100.0 + train.PLOT_SECONDS)
    assert not train.redraw_due(two, (one, 100.0), active=True, now=101.0)
    assert train.redraw_due((("1. YaPO", 6, "finished"),), (two, 100.0), active=False, now=100.5)
    assert not train.redraw_due(two, (two, 0.0), active=True, now=100.0)
    assert "No runs yet" in train.runs_html(None)
    assert "Setup" in train.setup_summary(None) and "Method" in train.setup_summary(trained)
    assert common.number(3.0, "epochs", int) == 3
    with pytest.raises(SettingsError, match="epochs is empty"):
        common.number(None, "epochs", int)
    with pytest.raises(SettingsError, match=r"Max steps is -5; enter 0 \(all epochs\) or more"):
        common.number(-5, "Max steps", int, 0, " (all epochs)")


def test_a_long_runs_status_quotes_the_moving_averages_the_curves_draw():
    from yapo_core.training import StepMetrics

    def run(losses):
        history = [StepMetrics(i + 1, len(losses), 0, loss, 1.0 if loss < 0.5 else 0.0, 0.1, 0.0, 0.0, 50.0, 300, 0.01, 1.0, 0.01)
                   for i, loss in enumerate(losses)]
        return SimpleNamespace(total_steps=len(losses), step=len(losses), eta=lambda: None, history=history,
                               status="finished", elapsed=lambda: 10.0, error=None, notes=[], name="1. YaPO")

    short = train.run_html(0, run([0.7, 0.3]))
    assert "loss 0.3000 · reward acc 1.00 · margin +0.100 (this batch)" in short
    noisy = [0.2, 0.8] * 150  # one batch's loss swings; its moving average is about 0.5
    long = train.run_html(0, run(noisy))
    assert "(moving averages)" in long and "loss 0.8000" not in long
    assert "loss 0.5" in long or "loss 0.4" in long  # not the last batch's 0.8


class EndingRun:
    """A run that ends (after Stop) while the Train page draws its curves."""

    name, total_steps, step, history, error, notes = "1. YaPO", 100, 40, [], None, []
    status = "running"

    @property
    def active(self):
        return self.status == "running"

    def eta(self):
        return 5.0 if self.active else None

    def elapsed(self):
        return 2.0


def test_train_page_keeps_polling_when_a_run_ends_while_it_is_drawn(monkeypatch):
    run = EndingRun()
    session = SimpleNamespace(runs={"r": run}, run_list=lambda: [run])

    def curves_then_end(s):
        run.status = "stopped"
        return None

    monkeypatch.setattr(train, "curves", curves_then_end)
    status, _, timer = train.snapshot(session)
    # the run lines were drawn while it ran: polling must go on, or the page shows "running" for good
    assert "running" in status and timer.active is True
    status, _, timer = train.snapshot(session)  # the next tick shows the end and stops polling
    assert "stopped" in status and timer.active is False
    run.status = "running"
    status, _, timer, _ = train.tick(session, None, now=100.0)
    assert "running" in status and timer.active is True


def test_setup_page_notes_and_task_labels(ctx):
    assert "Gated" in setup.preset_notes(ctx, "gemma-2-2b-it") and "HF_TOKEN" in setup.preset_notes(ctx, "gemma-2-2b-it")
    assert "layer_15/width_65k/average_l0_68" in setup.preset_notes(ctx, "gemma-2-2b-it")
    assert setup.demo_task_label("culture-egypt", "culture") == "culture · egypt"
    assert setup.demo_task_label("power-seeking", "behaviour") == "behaviour · power-seeking"
    # the prompt and answer-form choices are shown for culture tasks only
    assert setup.shows_culture_options("demo", "culture-egypt") and setup.shows_culture_options("culture", None)
    assert setup.shows_culture_options("demo", None)  # before the world is built: the culture task it preselects
    assert not setup.shows_culture_options("demo", "power-seeking")
    assert not setup.shows_culture_options("behaviour", None) and not setup.shows_culture_options("file", None)


def test_training_curves_are_thinned_for_long_runs():
    from yapo_core.plots import thin, training_curves
    from yapo_core.training import StepMetrics

    history = [StepMetrics(i, 5000, 0, 0.6, 1.0, 0.1, 0.1, 0.0, 1.0, 3, 1e-4, 1.0, 0.01) for i in range(1, 5001)]
    fig = training_curves([("a", history)], max_points=1000)
    xs = list(fig.data[0].x)
    assert len(xs) <= 1001 and xs[0] == 1 and xs[-1] == 5000
    assert thin([1, 2, 3], 10) == [1, 2, 3]
    assert torch.tensor(xs).diff().min() > 0


def test_the_train_page_explains_chunked_training_on_zero_gpu_spaces(monkeypatch):
    from yapo_studio.zero_gpu import on_zero_gpu

    def note_visible() -> bool:
        with gr.Blocks() as blocks:
            train.build(gr.State())
        (note,) = [b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "zero-gpu-note"]
        assert "ZeroGPU" in note.value and "45 s" in note.value and "Stop" in note.value
        return note.visible

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert not on_zero_gpu() and not note_visible()
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert on_zero_gpu() and note_visible()


def test_train_page_fills_the_defaults_of_each_loaded_task_once(monkeypatch, tmp_path, ctx):
    from yapo_core.demo import OPEN_TRAINING, OPEN_TRAINING_BY_TASK, TRAINING

    monkeypatch.setenv("YAPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("YAPO_DEMO_SIZE", "mini")
    s = ctx.new_session()
    s.preset = ctx.catalog.preset("demo")
    steps = lambda updates: updates[train.PRESET_FIELDS.index("max_steps")].get("value")  # noqa: E731
    rejected = lambda updates: updates[train.PRESET_FIELDS.index("mcq_rejected")].get("visible")  # noqa: E731
    s.load_task(TaskSpec("demo", name="culture-egypt", localization="nolocalized"))
    shown = train.preset_defaults(s)
    assert steps(shown) == TRAINING["max_steps"]
    filled = train.defaults_key(s)
    assert steps(train.preset_defaults(s, filled)) is None  # a later visit keeps what the user typed
    assert steps(train.preset_defaults(s)) == TRAINING["max_steps"]  # a reloaded page is filled again
    s.load_task(TaskSpec("demo", name="power-seeking"))  # another task: its own defaults
    shown = train.preset_defaults(s, filled)
    assert steps(shown) == OPEN_TRAINING["max_steps"] != TRAINING["max_steps"]
    assert rejected(shown) is False  # open answers: no multiple-choice pairs to set against other options
    s.load_task(TaskSpec("demo", name="culture-egypt", localization="nolocalized", form="open_ended"))
    shown = train.preset_defaults(s)  # the longer open-answer run of a culture, not the letter answers' settings
    assert steps(shown) == OPEN_TRAINING_BY_TASK["culture"]["max_steps"] != OPEN_TRAINING["max_steps"]
    assert rejected(shown) is False
    # answers that give the option's text, then its letter, are set against every option too
    foods = "Which dish?\nA. Tea\nB. Ful medames\nC. Koshari\nAnswer with the letter."
    stated = tmp_path / "stated.jsonl"
    stated.write_text("".join(json.dumps({"prompt": f"{foods} ({i})", "chosen": "Koshari, option C.",
                                          "rejected": "Tea, option A."}) + "\n" for i in range(8)))
    s.load_task(TaskSpec("file", path=str(stated), test_fraction=0.25))
    assert rejected(train.preset_defaults(s)) is True
    assert train.preset_defaults(None)[0].get("value") is None


def test_a_new_or_cleared_upload_puts_all_three_column_mappings_back_on_auto():
    """Gradio takes the value out of each update it applies; one shared update reset only the
    first dropdown, and the others kept a column of the old file, which then failed every Load
    task ("not in the list of choices"), whatever the source."""
    from gradio.blocks import postprocess_update_dict

    dropdowns = [gr.Dropdown(choices=[setup.AUTO, "q", "good", "bad"], value=v) for v in ("q", "good", "bad")]
    updates = setup.mapping_reset([setup.AUTO])
    applied = [postprocess_update_dict(d, u) for d, u in zip(dropdowns, updates)]
    assert [a["value"] for a in applied] == [setup.AUTO] * 3


def test_library_advice_is_given_in_the_apps_terms():
    from gradio.utils import get_upload_folder

    upload = f"{get_upload_folder()}/abdc8bd0/header_only.csv"
    message = common.in_app_terms(f"data {upload!r} is empty: it has no rows.")
    assert message == "data 'header_only.csv' is empty: it has no rows."
    mapped = common.in_app_terms("the data has ['q']. Map yours with columns={'<role>': '<your column>'}.")
    assert "columns=" not in mapped and "Prompt, Chosen and Rejected column fields" in mapped
    other = common.in_app_terms("differ; load the matching model, or pass allow_other_model=True if you mean to.")
    assert "allow_other_model" not in other and "Setup" in other
    assert common.in_app_terms("use layer=1 or an SAE trained at layer 2.") == "use layer 1 or an SAE trained at layer 2."
    model = common.in_app_terms("it has those of 'gemma': choose one with rejected_model=.")
    assert model.startswith("it has those of 'gemma': choose one in the \"Rejected answers of model\" field (Culture")
    assert "for an uploaded file, map the Prompt, Chosen and Rejected columns" in model  # the field is the Culture source's
    assert common.in_app_terms("it has open_ended ones: use form='open_ended'.").endswith("choose the open-ended answer form.")
    assert common.in_app_terms("96 dropped); raise max_length (now 8).").endswith("raise Max length (tokens) on Train (now 8).")
    assert common.in_app_terms("lr=-0.1 must be a finite number above 0 and at most 10.") == \
        "Learning rate = -0.1 must be a finite number above 0 and at most 10."
    assert common.in_app_terms("grad_clip=0 must be at least 1e-06.").startswith("Gradient clipping = 0 ")
    assert common.in_app_terms("trained against every option (mcq_rejected='every_option') set").endswith(
        "option (MCQ rejected answers “every_option” on Train) set")


def test_setup_says_when_the_method_needs_an_sae_the_model_lacks(tiny_world, ctx):
    s = ctx.new_session()
    try:
        s.load_preset(ctx.catalog.preset("custom"), model=str(tiny_world.model_dir), layer=1)  # no SAE
        assert "BiPO and CAA only" in setup.bundle_summary(s)
        assert "loaded without an SAE" in setup.missing_sae(s)  # YaPO, the default method
        s.set_method("bipo")
        assert setup.missing_sae(s) == ""
    finally:
        s.close()


def test_local_folder_advice_names_the_custom_preset_and_a_public_app_gives_none(monkeypatch, ctx):
    offline = ("model 'a/b' is not in the local Hugging Face cache and the Hub cannot be reached. Download it once "
               "while online, or pass a local folder.")
    assert common.in_app_terms(offline).endswith("or choose the Custom preset on Setup and give a local folder.")
    assert common.in_app_terms("SAE release 'r/x' was not found: check the spelling of the Hugging Face id, or pass "
                               "an existing local folder.").endswith("the Custom preset on Setup and give an existing "
                                                                    "local folder.")
    assert common.in_app_terms("dataset 'a/b' is not in the local Hugging Face cache and the Hub cannot be reached. "
                               "Download it once while online, or pass a local folder.").endswith(
        "or upload its rows as a file on Setup.")
    assert common.in_app_terms("dataset 'cais/mmlu' is not in the local Hugging Face cache and the Hub cannot be "
                               "reached. Download it once while online, or pass a local folder.").endswith(
        "Download it once while online.")  # the capability check's questions: no upload stands in for them
    assert "local folder" in setup.preset_notes(ctx, "custom")
    monkeypatch.setenv("YAPO_PUBLIC", "1")
    assert common.in_app_terms(offline).endswith("Download it once while online.")
    assert common.in_app_terms("enter a model: a Hugging Face id (e.g. x/y) or a local folder.") == \
        "enter a model: a Hugging Face id (e.g. x/y)."
    assert setup.preset_notes(ctx, "custom") == setup.PUBLIC_CUSTOM_NOTE


def test_the_train_page_draws_runs_while_another_event_removes_one():
    """The timer draws the runs while Remove or Train, events of the same tab, change them."""
    session = Session()

    class RemovedWhileDrawn(EndingRun):
        @property
        def active(self):
            session.runs.pop("r2", None)  # another event removes a run mid-draw
            return True

    session.runs.update(r1=RemovedWhileDrawn(), r2=EndingRun())
    assert "1. YaPO" in train.runs_html(session) and train.any_active(session)
    assert len(train.curves_shown(session)) == 1


def test_setup_says_which_task_stays_loaded_when_a_file_is_chosen_or_cleared(trained):
    assert setup.file_status(None, chosen=False) == "No file is chosen; no task is loaded."
    assert setup.file_status(trained, chosen=True).startswith("A new file is chosen: press **Load task** to use it (the task")
    assert setup.file_status(trained, chosen=False).startswith("No file is chosen; the task loaded is still")
    # a file whose columns must be mapped says so, not "press Load task", which would fail on it
    assert setup.file_status(None, chosen=True, recognised=False).startswith(
        "A new file is chosen: map its three columns below, then press **Load task**")


def test_a_number_at_its_least_is_taken():
    assert common.number(0, "Max steps", int, 0, " (all epochs)") == 0


def test_setup_says_where_the_demo_world_stands_before_a_model_is_loaded(monkeypatch, tmp_path):
    """A page opened or reloaded while the first build runs (in another process) says so, and one
    opened after it says Load model takes seconds: not a bare "No model loaded yet"."""
    from yapo_core.demo import default_cache_dir
    from yapo_core.demo.staging import one_build_at_a_time
    from yapo_studio import tasks as studio_tasks

    monkeypatch.setenv("YAPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("YAPO_DEMO_SIZE", "mini")
    assert setup.no_model_status() == setup.NO_MODEL
    with one_build_at_a_time(default_cache_dir(0, "mini")):
        assert "being built" in setup.no_model_status() and studio_tasks.demo_world_state() == "building"
    monkeypatch.setattr(studio_tasks, "demo_world_ready", lambda: True)
    assert "takes seconds" in setup.no_model_status()
