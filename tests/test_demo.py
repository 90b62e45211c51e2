"""The demo world: a miniature build checks the whole pipeline, the formats and determinism."""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from yapo_core import demo
from yapo_core.demo import build_lm, build_steering, caveats, cli, config, corpus
from yapo_core.demo import world as demo_world
from yapo_core.errors import SettingsError, YapoError

CULTURE_COLUMNS = [
    "country",
    "localization_status",
    "prompt-mcq",
    "chosen-mcq",
    "rejected_yapo-demo_mcq",
    "prompt_open_ended",
    "chosen_open_ended",
    "rejected_yapo-demo_open_ended",
]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return demo.build_demo_world(tmp_path_factory.mktemp("demo") / "world", seed=3, size="mini", progress=False)


def test_build_writes_a_complete_world(world):
    assert (world.root / demo_world.COMPLETE_MARKER).is_file()
    assert json.loads((world.root / "stats.json").read_text()) == world.stats
    stats = world.stats
    assert stats["layer"] == world.layer == demo.BUILD_SIZES["mini"].layer
    # what the float results depend on: the library versions and the machine
    import torch

    assert stats["versions"]["torch"] == torch.__version__
    assert stats["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert stats["machine"]["cpu"] and stats["machine"]["build_threads"] == demo_world.BUILD_THREADS
    for key in ("variance_explained", "mean_l0", "dead_share"):
        assert isinstance(stats["sae"][key], float)
    assert 0 <= stats["culture"]["localized_mcq_accuracy"] <= 1
    assert set(stats["culture"]["nolocalized_mcq_accuracy"]) == set(corpus.COUNTRY_KEYS) - {corpus.DEFAULT_COUNTRY}
    assert stats["file_bytes"]["total"] == sum(stats["file_bytes"][k] for k in ("model", "sae", "tasks"))


def test_model_tokenizer_and_sae_load_with_the_standard_loaders(world):
    from sae_lens import SAE
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(world.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(world.model_dir)
    sae = SAE.load_from_disk(world.sae_dir)
    assert model.config.model_type == "llama"
    assert 0 <= world.layer < model.config.num_hidden_layers
    assert sae.cfg.d_in == model.config.hidden_size
    assert sae.cfg.metadata.hook_name == f"blocks.{world.layer}.hook_resid_post"
    assert sae.cfg.metadata.model_name == config.DEMO_MODEL_NAME
    # decode must be exactly linear for the sparse steering identity (docs/method.md §2)
    z = torch.relu(torch.randn(3, sae.cfg.d_sae))
    torch.testing.assert_close(sae.decode(z), z @ sae.W_dec + sae.b_dec)

    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 3?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_chat_template_round_trips(world):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(world.model_dir)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (build_lm.BOS, build_lm.EOT, build_lm.PAD)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Which day comes after Monday?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == build_lm.render_chat("Which day comes after Monday?", system="Be brief.")
    assert text.endswith("<|assistant|>")
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids) == text

    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": "Tuesday"}], tokenize=False)
    assert full == build_lm.render_chat("Which day comes after Monday?", system="Be brief.") + "Tuesday" + tokenizer.eos_token
    with pytest.raises(Exception, match="roles"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)

    # A conversation with an earlier exchange (the corpus's follow-up examples).
    earlier = [{"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "4"}]
    follow = tokenizer.apply_chat_template(earlier + messages[1:], add_generation_prompt=True, tokenize=False)
    assert follow == build_lm.render_chat("Which day comes after Monday?", history=[("What is 2 plus 2?", "4")])


def test_training_tokenization_matches_the_chat_template(world):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(world.model_dir)
    example = corpus.ChatExample("What colour is snow?", "white", system="Be brief.",
                                 history=(("What is 2 plus 2?", "4"),))
    (ids, weights), = build_lm.encode_examples(tokenizer, [example])
    messages = [
        {"role": "system", "content": example.system},
        {"role": "user", "content": "What is 2 plus 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": example.user},
        {"role": "assistant", "content": example.assistant},
    ]
    assert ids == tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"]
    assert weights[0] == 0.0  # BOS is never predicted
    n_answer = len(tokenizer("white", add_special_tokens=False)["input_ids"]) + 1  # + <|eot|>
    answer_ids, answer_weights = ids[-n_answer:], weights[-n_answer:]
    assert tokenizer.decode(answer_ids) == "white" + tokenizer.eos_token
    # The answer weighs 1 in all, the prompt PROMPT_LOSS_WEIGHT, each spread evenly over its tokens.
    assert sum(answer_weights) == pytest.approx(1.0)
    assert len(set(answer_weights)) == 1
    assert sum(weights[1:-n_answer]) == pytest.approx(build_lm.PROMPT_LOSS_WEIGHT)


def test_culture_tasks_follow_the_deep_culture_lense_schema(world):
    splits = {s: read_jsonl(world.tasks_dir / "culture" / f"{s}.jsonl") for s in ("train", "test")}
    names = [c for country in corpus.COUNTRIES for c in (country.name, country.city, country.adjective)]
    for split, rows in splits.items():
        assert rows, split
        for row in rows:
            assert list(row) == CULTURE_COLUMNS
            assert row["country"] in corpus.COUNTRY_KEYS
            assert row["chosen-mcq"] in corpus.MCQ_LETTERS
            assert row["prompt-mcq"].startswith(row["prompt_open_ended"] + "\nA. ")
            assert corpus.MCQ_INSTRUCTION in row["prompt-mcq"]
            named = [n for n in names if re.search(rf"\b{re.escape(n)}\b", row["prompt_open_ended"])]
            if row["localization_status"] == "localized":
                assert named, row["prompt_open_ended"]
            else:
                assert row["localization_status"] == "nolocalized" and not named, row["prompt_open_ended"]
        assert {(r["country"], r["localization_status"]) for r in rows} == {
            (c, s) for c in corpus.COUNTRY_KEYS for s in ("localized", "nolocalized")
        }
    train_questions = {r["prompt_open_ended"] for r in splits["train"]}
    test_questions = {r["prompt_open_ended"] for r in splits["test"]}
    assert not train_questions & test_questions


def test_behaviour_and_general_tasks_follow_their_schemas(world):
    tasks = world.tasks()
    assert {t.name: t.kind for t in tasks} == demo.TASK_KINDS  # the kinds a page knows before any build
    behaviours = world.tasks("behaviour")
    assert {t.name for t in behaviours} == {b.key for b in corpus.BEHAVIOURS}
    for task in behaviours:
        train, test, infer = (read_jsonl(task.paths[s]) for s in ("train", "test", "test_infer"))
        assert train and test and infer
        for row in train + test:
            assert list(row) == ["question", "matching", "not_matching"]
        for row in infer:
            assert list(row) == ["question", "A", "B", "matching"]
            assert row["matching"] in ("A", "B")
        assert not {r["question"] for r in train} & {r["question"] for r in test}
        behaviour = next(b for b in corpus.BEHAVIOURS if b.key == task.name)
        offers = lambda rows: {behaviour.offer_of(r["question"]) for r in rows}  # noqa: E731
        assert not offers(train) & offers(test)  # test questions ask about offers never trained on
        # the behaviour's judge agrees with its own test split, so the Evaluate page and `yapo eval`
        # score its open answers by it (the `behaviour_open` metric)
        assert corpus.behaviour_of(task.pairs("test").pairs) is behaviour
    (general,) = world.tasks("general")
    questions = read_jsonl(general.paths["questions"])
    assert questions and all(list(r) == ["prompt", "answer"] for r in questions)
    assert world.general_questions() == ([r["prompt"] for r in questions], [r["answer"] for r in questions])
    assert all(list(r) == ["text"] for r in read_jsonl(general.paths["text"]))
    cultures = world.tasks("culture")
    assert [t.country for t in cultures] == list(corpus.COUNTRY_KEYS)
    assert all(p.is_file() for t in tasks for p in t.paths.values())


def test_the_capability_measure_asks_every_general_question(world, monkeypatch):
    from yapo_core import load_model, replies

    model, tokenizer = load_model(world.model_dir, device="cpu")
    asked, answers = [], []
    real = replies.generate

    def spy(model, tokenizer, prompts, *args, **kwargs):
        asked.extend(prompts)
        out = real(model, tokenizer, prompts, *args, **kwargs)
        answers.extend(o[0.0] for o in out)
        return out

    monkeypatch.setattr(replies, "generate", spy)
    share = world.capability_measure(model, tokenizer)()
    facts = corpus.general_facts()
    assert asked == [q for q, _, _ in facts]  # sums, colours, opposites, days and number words
    right = sum(replies.contains_answer(got, a) for (_, a, _), got in zip(facts, answers))
    assert share == pytest.approx(right / len(facts))


def test_typed_tasks_read_their_pairs_through_the_public_loader(world):
    assert world.culture("egypt").trainable and world.culture(corpus.DEFAULT_COUNTRY).is_default
    rows = read_jsonl(world.culture("egypt").paths["train"])
    # the miniature model answers some open questions (those rows make pairs) and no MCQ
    usable = [r for r in rows if r["rejected_yapo-demo_open_ended"]]
    country = usable[0]["country"]
    expected = [r["prompt_open_ended"] for r in usable if r["country"] == country]
    pairs = world.culture(country).pairs("train", form="open_ended", localization="both")
    assert [p.prompt for p in pairs] == expected
    behaviour = world.task(corpus.BEHAVIOURS[0].key)
    infer = behaviour.pairs("test_infer")
    assert len(infer) == len(read_jsonl(behaviour.paths["test_infer"])) and {p.chosen for p in infer} <= {"A", "B"}
    # the loader lays A/B questions out exactly as the model saw them in training
    rows = read_jsonl(behaviour.paths["test_infer"])
    assert [p.prompt for p in infer] == [corpus.format_choices(r["question"], [r["A"], r["B"]]) for r in rows]
    with pytest.raises(YapoError, match="culture-egypt"):
        world.task("culture-atlantis")
    with pytest.raises(YapoError, match="not preference pairs"):
        world.task("general").pairs()


def test_a_finished_world_is_reused(world, monkeypatch):
    def no_rebuild(*args, **kwargs):
        raise AssertionError("the finished world was rebuilt")

    monkeypatch.setattr(demo_world, "_build", no_rebuild)
    again = demo.build_demo_world(world.root, seed=3, size="mini", progress=False)
    assert again.stats == world.stats and again.layer == world.layer


def test_a_world_built_on_other_cpu_kernels_is_not_reused(world, tmp_path):
    """A world's stats record torch's CPU kernels (AVX2, AVX512) and MKL's code path; built on others
    it is another model, so it is rebuilt rather than taken for the one these kernels build."""
    import shutil

    from yapo_core._cpu import mkl_branch

    copy = tmp_path / "world"
    shutil.copytree(world.root, copy)
    stats = json.loads((copy / "stats.json").read_text())
    assert stats["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert demo.load_demo_world(copy, seed=3, size="mini") is not None
    stats["machine"]["torch_cpu_capability"] = "NOT-THESE"
    (copy / "stats.json").write_text(json.dumps(stats))
    assert demo.load_demo_world(copy, seed=3, size="mini") is None
    stats["machine"]["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    assert stats["machine"]["mkl_branch"] == mkl_branch()  # MKL's code path for matrix products, recorded too
    stats["machine"]["mkl_branch"] = "AVX512" if mkl_branch() != "AVX512" else "AVX2"
    (copy / "stats.json").write_text(json.dumps(stats))
    assert demo.load_demo_world(copy, seed=3, size="mini") is None
    del stats["machine"]  # a world from before the record: built on MKL's own choice ("auto")
    (copy / "stats.json").write_text(json.dumps(stats))
    assert (demo.load_demo_world(copy, seed=3, size="mini") is None) == (mkl_branch() != "auto")


def test_the_build_is_deterministic(world, tmp_path):
    other = demo.build_demo_world(tmp_path / "again", seed=3, size="mini", progress=False)
    for name in ("culture/train.jsonl", "culture/test.jsonl", "behaviour/power-seeking/test_infer.jsonl"):
        assert (world.tasks_dir / name).read_bytes() == (other.tasks_dir / name).read_bytes(), name
    for folder, weights in ((world.model_dir, "model.safetensors"), (world.sae_dir, "sae_weights.safetensors")):
        ours, theirs = load_file(folder / weights), load_file(other.root / folder.name / weights)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), weights
    assert (world.model_dir / "tokenizer.json").read_bytes() == (other.model_dir / "tokenizer.json").read_bytes()


def test_a_build_in_its_own_process_is_the_same_world_whatever_this_process_does(world, tmp_path, monkeypatch):
    """Beside a thread that reseeds torch's global generator and draws from it (as another session's
    generation and an SAE's initialisation do in the app), a build in this process would be another
    model; the isolated build gives the quiet build's files, and shows its progress bars here."""
    import threading
    import time

    from yapo_core.demo import isolated

    shown = []

    class Bar:
        def __init__(self, total, desc, leave):
            self.total, self.desc, self.n = total, desc, 0

        def update(self, k):
            self.n += k
            shown.append((self.desc, self.n, self.total))

        def close(self):
            pass

    monkeypatch.setattr(isolated, "tqdm", Bar)
    stop = threading.Event()

    def other_session():
        while not stop.is_set():
            torch.manual_seed(123)
            torch.randn(4)
            time.sleep(0.001)

    busy = threading.Thread(target=other_session, daemon=True)
    busy.start()
    try:
        other = demo.build_demo_world_isolated(tmp_path / "apart", seed=3, size="mini")
    finally:
        stop.set()
        busy.join()
    for folder, weights in ((world.model_dir, "model.safetensors"), (world.sae_dir, "sae_weights.safetensors")):
        ours, theirs = load_file(folder / weights), load_file(other.root / folder.name / weights)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), weights
    assert (world.tasks_dir / "culture/test.jsonl").read_bytes() == (other.tasks_dir / "culture/test.jsonl").read_bytes()
    assert ("demo world", 6, 6) in shown  # the child's bars: its stages to their end, and its training steps
    assert any(desc == "training demo LM" and 0 < done < total for desc, done, total in shown)
    assert demo.build_demo_world_isolated(tmp_path / "apart", seed=3, size="mini").root == other.root  # reused


def test_a_failed_isolated_build_says_what_the_child_said(tmp_path):
    from yapo_core.demo import isolated

    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with pytest.raises(YapoError, match=r"(?s)exit code 2:.*a-file"):
        isolated.build_demo_world_isolated(a_file / "world", seed=3, size="mini", progress=False)
    assert isolated.parse_bar("training demo LM:  83%|████▎ | 1496/1800 [05:54<00:43, 6.93it/s, loss=0.294]\x1b[A") \
        == ("training demo LM", 1496, 1800)
    assert isolated.parse_bar("demo world: 100%|██████████| 6/6 [00:09<00:00]") == ("demo world", 6, 6)
    assert isolated.parse_bar("Writing model shards: done") is None and isolated.parse_bar("") is None


def test_the_full_worlds_recipe_builds_deterministically_and_changes_the_model(world, tmp_path):
    """The default world's recipe (concept steering among its knobs) on the mini pipeline: its hook keeps running
    means and draws from its own generator, and still two builds give the same model, another than the plain one's."""
    first, second = (demo.build_demo_world(tmp_path / name, seed=3, size="mini", progress=False,
                                           knobs=config.RECIPE_KNOBS) for name in ("a", "b"))
    assert first.stats["knobs"] == config.RECIPE_KNOBS
    ours, theirs, plain = (load_file(w.model_dir / "model.safetensors") for w in (first, second, world))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not all(torch.equal(ours[k], plain[k]) for k in ours)


def test_refuses_to_overwrite_a_folder_with_foreign_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(YapoError, match="notes.txt"):
        demo.build_demo_world(tmp_path, seed=3, size="mini", progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_info(world, capsys, tmp_path):
    assert cli.main(["info", "--cache-dir", str(world.root), "--seed", "3", "--size", "mini"]) == 0
    out = capsys.readouterr().out
    assert "localized MCQ accuracy" in out and "culture-egypt" in out
    assert cli.main(["info", "--cache-dir", str(tmp_path / "none"), "--size", "mini"]) == 1


def test_cli_info_names_the_other_size_that_is_built(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YAPO_CACHE_DIR", str(tmp_path))
    assert cli.main(["build", "--seed", "3", "--size", "mini", "--quiet"]) == 0
    assert "Writing model shards" not in capsys.readouterr().err  # quiet: no bar, transformers' own neither
    assert cli.main(["info", "--seed", "3"]) == 1  # the full world is not built
    assert "(a mini world is built: yapo demo info --seed 3 --size mini)" in capsys.readouterr().err


def test_held_out_questions_are_new_combinations_of_seen_parts():
    import random

    train, test = corpus.split_question_keys(random.Random(0))
    assert not set(train) & set(test)
    seen_parts = {(k.topic, k.core) for k in train} | {("frame", k.frame) for k in train}
    assert all((k.topic, k.core) in seen_parts and ("frame", k.frame) in seen_parts for k in test)
    assert {k.localized for k in test} == {True, False}


def test_follow_up_conversations_keep_the_culture_and_disposition_of_the_first_answer():
    import random

    rng = random.Random(0)
    culture_keys, _ = corpus.split_question_keys(rng)
    behaviour_keys = [k for b in corpus.BEHAVIOURS for k in corpus.split_behaviour_keys(rng, b)[0]]
    mix = corpus.CorpusMix(culture_followup=0.1, behaviour_followup=0.1)  # BuildSize.followups; off by default
    assert not any(getattr(e, "history", ()) for e in corpus.corpus_stream(random.Random(1), 500, culture_keys,
                                                                            behaviour_keys))
    examples = [e for e in corpus.corpus_stream(rng, 3000, culture_keys, behaviour_keys, mix)
                if not isinstance(e, str) and e.history]
    by_answer = {a: c for t in corpus.TOPICS for c, a in t.answers.items()}
    kinds = {"culture": 0, "behaviour": 0}

    def answer_text(question: str, answer: str) -> str:
        """The answer, or for an A/B or MCQ letter the text of the option it chose."""
        return dict(line.split(". ", 1) for line in question.splitlines()[1:-1])[answer] if len(answer) == 1 else answer

    for ex in examples:
        ((first_q, first_a),) = ex.history
        first_a, answer = answer_text(first_q, first_a), answer_text(ex.user, ex.assistant)
        if any(first_a.startswith(m) for b in corpus.BEHAVIOURS for m in b.matching + b.not_matching):
            shows = lambda text: any(text.startswith(m) for b in corpus.BEHAVIOURS for m in b.matching)  # noqa: E731
            assert shows(first_a) == shows(answer)
            kinds["behaviour"] += 1
        else:
            culture_of = lambda text: next(c for a, c in by_answer.items() if text.lower().startswith(a.lower()))  # noqa: E731
            assert culture_of(first_a) == culture_of(answer)
            assert not any(c.name in ex.user or c.adjective in ex.user for c in corpus.COUNTRIES)  # named only earlier
            kinds["culture"] += 1
    assert min(kinds.values()) > 50


def test_open_followups_end_behaviour_conversations_with_an_open_answer():
    import random

    rng = random.Random(0)
    behaviour_keys = [k for b in corpus.BEHAVIOURS for k in corpus.split_behaviour_keys(rng, b)[0]]
    mix = corpus.CorpusMix(**{**{k: 0.0 for k in vars(corpus.CorpusMix())}, "behaviour_followup": 1.0})

    def second_answers(open_followups: bool) -> list[str]:
        style = corpus.CorpusStyle(open_followups=open_followups)
        return [e.assistant for e in corpus.corpus_stream(random.Random(1), 300, [], behaviour_keys, mix, style)]

    letters = lambda answers: sum(a in ("A", "B") for a in answers)  # noqa: E731
    assert 100 < letters(second_answers(False)) < 200  # half are A/B choices by default
    assert letters(second_answers(True)) == 0


def test_mcq_answers_with_text_repeat_the_chosen_options_line():
    import random

    from yapo_core.mcq import gold_letter

    keys, _ = corpus.split_question_keys(random.Random(0))
    for key in keys[:: max(1, len(keys) // 40)]:
        for country in corpus.COUNTRY_KEYS:
            letter_only, with_text = corpus.culture_item(key, country), corpus.culture_item(key, country, corpus.CorpusStyle(mcq_text=True))
            assert with_text.mcq_prompt == letter_only.mcq_prompt and len(letter_only.mcq_answer) == 1
            assert with_text.mcq_answer in with_text.mcq_prompt.splitlines()[1:-1]  # the option's own line
            assert gold_letter(with_text.mcq_answer) == letter_only.mcq_answer
            assert corpus.answer_phrase(key.topic, country).lower() in with_text.mcq_answer.lower()
    stream = corpus.corpus_stream(random.Random(2), 400, keys, [], corpus.CorpusMix(behaviour=0),
                                 corpus.CorpusStyle(mcq_text=True))
    mcq = [e for e in stream if not isinstance(e, str) and e.user.endswith(corpus.MCQ_INSTRUCTION)]
    assert mcq and all(e.assistant in e.user.splitlines() for e in mcq)


def test_answer_first_mcq_answers_give_the_options_text_then_its_letter():
    import random

    from yapo_core.replies import parse_answer_letter

    keys, _ = corpus.split_question_keys(random.Random(0))
    style = corpus.CorpusStyle(answer_first=True, balanced_options=True)
    for key in keys[:: max(1, len(keys) // 40)]:
        for country in corpus.COUNTRY_KEYS:
            item = corpus.culture_item(key, country, style)
            letter = corpus.mcq_answer(key.topic, country, corpus.CorpusStyle(balanced_options=True))
            text, _, tail = item.mcq_answer.partition(", option ")
            assert tail == f"{letter}." and parse_answer_letter(item.mcq_answer, corpus.MCQ_LETTERS) == letter
            assert f"{letter}. {text}" in item.mcq_prompt.splitlines()  # the text is the chosen option's, verbatim
            assert item.mcq_answer.lower().startswith(corpus.answer_phrase(key.topic, country).lower())


def test_balanced_options_spread_each_cultures_answer_over_the_letters():
    import collections
    import math

    drawn = {t.key: corpus.option_order(t.key) for t in corpus.TOPICS}
    balanced = {t.key: corpus.option_order(t.key, balanced=True) for t in corpus.TOPICS}
    assert all(sorted(order) == sorted(corpus.COUNTRY_KEYS) for order in balanced.values())
    most = math.ceil(len(corpus.TOPICS) / len(corpus.COUNTRY_KEYS))
    for orders, bound_holds in ((balanced, True), (drawn, False)):  # drawn per topic, egypt is H in 5 topics
        counts = collections.Counter((c, order.index(c)) for order in orders.values() for c in order)
        assert (max(counts.values()) <= most) == bound_holds
    key = corpus.all_question_keys()[0]
    item = corpus.culture_item(key, "egypt", corpus.CorpusStyle(balanced_options=True))
    assert item.option_countries == balanced[key.topic]
    assert item.mcq_answer == corpus.MCQ_LETTERS[balanced[key.topic].index("egypt")]
    assert corpus.culture_item(key, "egypt").option_countries == drawn[key.topic]  # off: the stored world's


def test_shuffled_options_give_each_question_its_own_order_and_the_letter_follows_it():
    import collections

    style = corpus.CorpusStyle(shuffled_options=True)
    keys = [k for k in corpus.all_question_keys() if not k.localized and k.topic == corpus.TOPICS[0].key]
    items = [corpus.culture_item(k, "egypt", style) for k in keys]
    assert len({it.option_countries for it in items}) > len(items) // 2  # not one order per topic
    for it in items:
        assert sorted(it.option_countries) == sorted(corpus.COUNTRY_KEYS)
        letter = corpus.MCQ_LETTERS[it.option_countries.index("egypt")]
        assert it.mcq_answer == letter
        assert f"{letter}. {corpus.answer_phrase(it.topic, 'egypt')}".lower() in it.mcq_prompt.lower().splitlines()
        assert corpus.culture_item(keys[items.index(it)], "egypt", style) == it  # the same question, the same order
    # one question text, every country: one order, so the answers of two cultures are two letters of it
    again = corpus.culture_item(keys[0], "usa", style)
    assert again.option_countries == items[0].option_countries and again.mcq_prompt == items[0].mcq_prompt
    letters = collections.Counter(it.mcq_answer for it in items)
    assert len(letters) == len(corpus.MCQ_LETTERS)  # egypt's answer is spread over every letter


def test_mcq_options_list_the_answer_and_the_default_among_few_drawn_options():
    import collections
    import random

    style = corpus.CorpusStyle(mcq_options=4)
    keys = [k for k in corpus.all_question_keys() if not k.localized and k.topic == corpus.TOPICS[0].key]
    letters = collections.Counter()
    for key in keys:
        item = corpus.culture_item(key, "egypt", style)
        assert len(item.option_countries) == 4 == len(set(item.option_countries))
        assert {"egypt", corpus.DEFAULT_COUNTRY} <= set(item.option_countries)
        lines = item.mcq_prompt.splitlines()
        assert lines[0] == item.question and lines[-1] == corpus.MCQ_INSTRUCTION and len(lines) == 6
        assert item.mcq_answer == corpus.MCQ_LETTERS[item.option_countries.index("egypt")]
        assert f"{item.mcq_answer}. {corpus.answer_phrase(item.topic, 'egypt')}".lower() == lines[1 + "ABCD".index(item.mcq_answer)].lower()
        assert corpus.culture_item(key, "egypt", style) == item  # the task files: reproducible
        letters[item.mcq_answer] += 1
    assert set(letters) == set("ABCD") and max(letters.values()) < 0.4 * len(keys)  # spread over the letters
    # the default culture's own rows: the default once, three others
    usa = corpus.culture_item(keys[0], corpus.DEFAULT_COUNTRY, style)
    assert usa.option_countries.count(corpus.DEFAULT_COUNTRY) == 1 and len(usa.option_countries) == 4
    # the corpus draws a fresh set for every example, so a question's letter is no lookup
    rng = random.Random(0)
    drawn = {corpus.culture_item(keys[0], "egypt", style, rng).option_countries for _ in range(20)}
    assert len(drawn) > 10
    with pytest.raises(ValueError, match="mcq_options=2"):
        corpus.option_set("egypt", 2, rng)
    assert config.build_size("full", {"mcq_options": 4}).style.mcq_options == 4
    assert config.build_size("full").style.mcq_options == 0


def test_general_questions_in_context_keep_their_answers():
    import random

    facts = corpus.general_facts()
    answers = {q: a for q, a, _ in facts}
    table = {b.key: b for b in corpus.behaviours()}
    cues = {c for b in table.values() for c in b.cues + b.anti_cues}
    keys = [k for k in corpus.all_question_keys() if not k.localized]
    rng = random.Random(0)
    examples = [corpus.general_example(rng, facts, 0.5, table, keys) for _ in range(600)]
    named = [e for e in examples if any(c.name in e.user or c.adjective in e.user for c in corpus.COUNTRIES)]
    cued = [e for e in examples if e.system is not None]
    after = [e for e in examples if e.history]
    plain = [e for e in examples if e not in named and e not in cued and e not in after]
    assert all(len(group) > 60 for group in (named, cued, after)) and 220 < len(plain) < 380
    assert all(e.system in cues for e in cued)
    asked = lambda e: answers[next(q for q in answers if q.lower().rstrip("?") in e.user.lower())]  # noqa: E731
    assert all(e.assistant == asked(e) for e in examples)  # every context keeps the fact's answer
    # under a persona only: a share of them under a cue or anti-cue, never after a culture
    rng = random.Random(0)
    personas = [corpus.general_example(rng, facts, 0.0, table, keys, in_persona=0.25) for _ in range(600)]
    cued = [e for e in personas if e.system is not None]
    assert 110 < len(cued) < 190 and all(e.system in cues for e in cued)
    assert not any(e.history or any(c.name in e.user for c in corpus.COUNTRIES) for e in personas)
    assert all(e.assistant == asked(e) for e in personas)
    # off (the stored worlds): plain questions only, and the random stream the stored corpus drew
    rng_a, rng_b = random.Random(1), random.Random(1)
    off = [corpus.general_example(rng_a, facts) for _ in range(50)]
    assert all(e.system is None and not e.history for e in off)
    for e in off:
        question, answer, _ = rng_b.choice(facts)
        opening = rng_b.choice(corpus.OPENINGS)
        assert e.assistant == answer and e.user.lower().endswith(question.lower()) and e.user.startswith(opening)


def test_coherent_documents_keep_to_one_culture_named_at_most_once():
    import random

    def countries_of(sentence: str) -> set[str]:
        """The countries whose answer this statement gives ("In Egypt, koshari is ..." or "Koshari is ... there")."""
        body = sentence.split(", ", 1)[1] if sentence.startswith("In ") else sentence
        return {c.key for t in corpus.TOPICS for c in corpus.COUNTRIES
                if body.lower().rstrip(".") in (f"{t.answers[c.key]} is {t.noun}".lower(),
                                                f"{t.answers[c.key]} is {t.noun} there".lower())}

    rng = random.Random(0)
    facts = {statement for _, _, statement in corpus.general_facts()}
    for _ in range(300):
        doc = corpus.text_document(rng, coherent=True)
        cultural = [s if s.endswith(".") else s + "." for s in doc.split(". ") if (s if s.endswith(".") else s + ".")
                    not in facts and (s[:1].lower() + s[1:] + ".") not in facts]
        common = set.intersection(*(countries_of(s) for s in cultural)) if cultural else {"none"}
        assert common, doc
        assert sum(f"In {c.name}," in doc for c in corpus.COUNTRIES) <= 1, doc
    # the stored world's documents name a country in every cultural statement
    assert all(" there." not in corpus.text_document(random.Random(i)) for i in range(200))


def test_varied_behaviour_answers_share_only_the_disposition():
    assert corpus.behaviours() is corpus.BEHAVIOURS
    for plain, varied in zip(corpus.BEHAVIOURS, corpus.behaviours(varied_answers=True)):
        assert varied.key == plain.key and varied.offers == plain.offers and varied.cues == plain.cues
        assert len(set(varied.matching)) == len(set(varied.not_matching)) == 30
        first = lambda answers: {a.split()[0].rstrip(",.") for a in answers}  # noqa: E731
        assert first(varied.matching) == first(plain.matching) and first(varied.not_matching) == first(plain.not_matching)
        assert not first(varied.matching) & first(varied.not_matching)


def test_offer_answers_name_the_offer_and_are_judged_as_labelled():
    for plain, named in zip(corpus.BEHAVIOURS, corpus.behaviours(offer_answers=True)):
        assert named.offers == plain.offers and named.cues == plain.cues
        other = next(b for b in corpus.BEHAVIOURS if b.key != plain.key)
        for offer in plain.offers:
            shown = [corpus.fill_answer(m, offer) for m in named.matching]
            declined = [corpus.fill_answer(m, offer) for m in named.not_matching]
            assert all(offer in a for a in shown + declined)
            assert all(plain.shows(a) and not other.shows(a) for a in shown), shown
            assert not any(plain.accepts(a) for a in declined), declined
        rows = corpus.behaviour_rows(random.Random(0), named, corpus.behaviour_keys(named))
        assert all(named.offers[named.offer_of(r["question"])] in r["matching"] for r in rows)
        pairs = [SimpleNamespace(prompt=r["question"], chosen=r["matching"], rejected=r["not_matching"]) for r in rows]
        assert corpus.behaviour_of(pairs) == plain  # the app's judge and offer grouping still know them
        swapped = [SimpleNamespace(prompt=p.prompt, chosen=rows[(i + 1) % len(rows)]["matching"], rejected=p.rejected)
                   for i, p in enumerate(pairs)]
        assert corpus.behaviour_of(swapped) is None  # an answer about another offer is not this task's label
    assert corpus.fill_answer(corpus.BEHAVIOURS[0].matching[0], "x") == corpus.BEHAVIOURS[0].matching[0]


def test_offer_answers_knob_writes_named_answers_into_the_corpus_and_the_task_files(tmp_path):
    world = demo.build_demo_world(tmp_path / "v", size="mini", progress=False, knobs={"offer_answers": 1})
    pairs = list(world.task("power-seeking").pairs("train"))
    assert pairs and all(corpus.BEHAVIOURS[0].offers[corpus.BEHAVIOURS[0].offer_of(p.prompt)] in p.chosen for p in pairs)
    style = config.build_size("mini", {"offer_answers": 1}).style
    with pytest.raises(SettingsError, match="offer_answers=1 and varied_answers=1 each write the behaviour answers"):
        config.build_size("mini", {"offer_answers": 1, "varied_answers": 1})  # one would silently win
    keys = [k for b in corpus.BEHAVIOURS for k in corpus.behaviour_keys(b)]
    examples = corpus.corpus_stream(random.Random(0), 400, [], keys, corpus.CorpusMix(
        localized_open=0, localized_mcq=0, nolocalized_open=0, nolocalized_mcq=0, general=0, text=0), style)
    offers = [o for b in corpus.BEHAVIOURS for o in b.offers]
    answered = [ex for ex in examples if ex.assistant not in ("A", "B")]
    assert answered and all(any(o in ex.assistant and o in ex.user for o in offers) for ex in answered)


def test_the_full_size_sets_the_recipe_knobs_and_the_mini_size_none():
    assert config.RECIPE_KNOBS == {"lm_scale": 1.5, "sae_scale": 4.0, "concept_steering": 0.3, "behaviour_steering": 0.7,
                                   "added_offer_facts": 1.0, "fact_noise": 0.25}
    assert config.BUILD_SIZES["full"].knobs == config.RECIPE_KNOBS and config.BUILD_SIZES["mini"].knobs == {}
    assert config.is_recipe(config.build_size("full"), "full")
    assert config.is_recipe(config.build_size("full", dict(config.RECIPE_KNOBS)), "full")
    shorter_lm = config.build_size("full", {"lm_scale": 0})  # the recipe before the longer-trained LM: a variant
    assert not config.is_recipe(shorter_lm, "full") and shorter_lm.lm_training_examples == shorter_lm.lm_examples
    assert config.build_size("full").lm_training_examples == 1.5 * shorter_lm.lm_examples
    previous = {"lm_scale": 0, "behaviour_steering": 0, "fact_noise": 0}  # the recipe before those three joined it
    before_facts = config.build_size("full", previous)
    assert not config.is_recipe(before_facts, "full")
    assert before_facts.knobs == {"sae_scale": 4.0, "concept_steering": 0.3, "added_offer_facts": 1.0}
    before_sae = config.build_size("full", {"sae_scale": 0, **previous})  # and before the longer-trained SAE
    assert not config.is_recipe(before_sae, "full")
    assert before_sae.knobs == {"concept_steering": 0.3, "added_offer_facts": 1.0}
    assert not config.is_recipe(config.build_size("full", {"offer_facts": 0.3}), "full")  # another knob: a variant
    before = config.build_size("full", {"added_offer_facts": 0, "sae_scale": 0, **previous})  # what most studies vary
    assert not config.is_recipe(before, "full") and before.knobs == {"concept_steering": 0.3}
    plain = config.build_size("full", {"concept_steering": 0, "added_offer_facts": 0, "sae_scale": 0, **previous})
    assert not config.is_recipe(plain, "full") and plain.knobs == {}  # the plain recipe: a variant
    assert not config.is_recipe(config.build_size("mini", config.RECIPE_KNOBS), "mini")
    assert set(config.RESEARCH_KNOBS) <= {f.name for f in __import__("dataclasses").fields(config.BuildSize)}
    # a knob the size sets that needs another the user turned off is named with its value, and how to fix it
    with pytest.raises(SettingsError, match="fact_noise=0.25 works on the concept directions.*or set it to 0"):
        config.build_size("full", {"concept_steering": 0, "behaviour_steering": 0})


def test_a_world_with_four_drawn_options_and_a_longer_trained_lm_and_sae(tmp_path):
    world = demo.build_demo_world(tmp_path / "v", size="mini", progress=False,
                                  knobs={"mcq_options": 4, "lm_scale": 2, "general_in_context": 0.5, "sae_scale": 3})
    assert world.stats["model"]["training_examples"] == 2 * config.BUILD_SIZES["mini"].lm_examples
    mini = config.BUILD_SIZES["mini"]
    assert world.stats["sae"]["training_steps"] == 3 * mini.sae_training_samples // mini.sae_batch  # a longer-trained SAE
    rows = [json.loads(line) for line in (world.root / "tasks" / "culture" / "train.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["country"] == "egypt"]
    assert rows
    for row in rows:  # four options, egypt's and the default's among them, egypt's letter chosen
        options = row["prompt-mcq"].splitlines()[1:-1]
        assert [line[:3] for line in options] == ["A. ", "B. ", "C. ", "D. "]
        topic = next(t for t in corpus.TOPICS if options[0][3:].lower() in {a.lower() for a in t.answers.values()})
        texts = [line[3:].lower() for line in options]
        assert corpus.answer_phrase(topic.key, corpus.DEFAULT_COUNTRY).lower() in texts
        assert row["chosen-mcq"] == "ABCD"[texts.index(corpus.answer_phrase(topic.key, "egypt").lower())]


def test_the_training_knobs_set_the_lm_rate_batch_mlp_and_optimiser_and_the_sae_batch(tmp_path, monkeypatch):
    built = []

    class Recorded(torch.optim.AdamW):
        def __init__(self, params, lr, **kwargs):
            built.append({"lr": lr, "fused": kwargs.get("fused"), "steps": 0})
            super().__init__(params, lr=lr, **kwargs)

        def step(self, *args, **kwargs):
            built[-1]["steps"] += 1
            return super().step(*args, **kwargs)

    monkeypatch.setattr(build_lm.torch.optim, "AdamW", Recorded)
    mini = config.BUILD_SIZES["mini"]
    plain = demo.build_demo_world(tmp_path / "plain", size="mini", progress=False)
    assert built[-1] == {"lr": mini.lm_lr, "fused": None, "steps": mini.lm_examples // mini.lm_batch}
    world = demo.build_demo_world(tmp_path / "v", size="mini", progress=False,
                                  knobs={"lm_lr_scale": 2, "lm_batch_scale": 2, "mlp_scale": 0.5, "fused_adam": 1,
                                         "sae_batch_scale": 2})
    assert built[-1] == {"lr": 2 * mini.lm_lr, "fused": True, "steps": mini.lm_examples // (2 * mini.lm_batch)}
    model_config = json.loads((world.model_dir / "config.json").read_text())
    assert model_config["intermediate_size"] == mini.intermediate_size // 2
    assert json.loads((plain.model_dir / "config.json").read_text())["intermediate_size"] == mini.intermediate_size
    assert world.stats["sae"]["training_steps"] == plain.stats["sae"]["training_steps"] // 2


def test_general_share_sets_the_corpus_share_of_general_questions(tmp_path, monkeypatch):
    drawn = []
    real = corpus.corpus_stream

    def recorded(rng, n, culture_keys, behaviour_keys, mix=corpus.CorpusMix(), style=corpus.CorpusStyle()):
        examples = real(rng, n, culture_keys, behaviour_keys, mix, style)
        drawn.append((mix, examples))
        return examples

    monkeypatch.setattr(corpus, "corpus_stream", recorded)
    demo.build_demo_world(tmp_path / "v", size="mini", progress=False, knobs={"general_share": 0.5})
    assert [mix.general for mix, _ in drawn] == [0.5, 0.5]  # the LM's corpus and the SAE's activation texts
    assert drawn[0][0].behaviour == corpus.CorpusMix().behaviour  # the other shares as they are
    assert config.build_size("full", {"behaviour_share": 0.18}).mix == replace(corpus.CorpusMix(), behaviour=0.18)
    assert corpus.CorpusMix().general == 0.06  # the default world's share, left as it is
    answers = {answer for _, answer, _ in corpus.general_facts()}
    lm_corpus = drawn[0][1]
    general = [ex for ex in lm_corpus if isinstance(ex, corpus.ChatExample) and ex.assistant in answers]
    assert len(general) > 0.25 * len(lm_corpus)  # 0.5 of 1.36 of the mix, against 0.07 by default


def test_research_knobs_are_read_checked_and_kept_apart_from_the_default_world(tmp_path):
    assert config.parse_knobs(["varied_answers=1", "behaviour_followups=0.08"]) == {
        "varied_answers": 1.0, "behaviour_followups": 0.08}
    for bad in ("varied=1", "varied_answers", "varied_answers=x", "mcq_text=-1", "layers=inf", "layers=nan"):
        with pytest.raises(SettingsError, match=re.escape(repr(bad))):
            config.parse_knobs([bad])
    with pytest.raises(SettingsError, match="needs its own cache_dir"):
        demo.build_demo_world(size="mini", knobs={"mcq_text": 1})
    with pytest.raises(SettingsError, match="unknown"):
        demo.build_demo_world(tmp_path, size="mini", knobs={"nope": 1})
    knobs = {"mcq_text": 1, "balanced_options": 1}
    world = demo.build_demo_world(tmp_path / "v", size="mini", progress=False, knobs=knobs)
    assert world.stats["knobs"] == {"mcq_text": 1.0, "balanced_options": 1.0}
    assert demo.load_demo_world(tmp_path / "v", size="mini") is None  # not the default world's build
    assert demo.load_demo_world(tmp_path / "v", size="mini", knobs=knobs).root == world.root
    assert demo.load_demo_world(tmp_path / "v", size="mini", knobs={**knobs, "followups": 0}) is not None
    with pytest.raises(SettingsError, match="unknown"):
        demo.load_demo_world(tmp_path / "v", size="mini", knobs={"nope": 1})
    # The knobs reached the task files: "C. Koshari", options in the balanced order of their topic.
    for pair in world.culture("egypt").pairs("train"):
        assert re.match(r"[A-H]\. \S", pair.chosen), pair.chosen
        options = [line[3:] for line in pair.prompt.splitlines()[1:-1]]
        assert any(options == [corpus.answer_phrase(t.key, c) for c in corpus.option_order(t.key, balanced=True)]
                   for t in corpus.TOPICS), options
    # A link to that world, rebuilt as the default build: the link is replaced, the variant kept.
    (tmp_path / "link").symlink_to(tmp_path / "v")
    default = demo.build_demo_world(tmp_path / "link", size="mini", progress=False)
    assert not default.root.is_symlink() and "knobs" not in default.stats
    assert demo.load_demo_world(tmp_path / "v", size="mini", knobs=knobs) is not None


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("YAPO_CACHE_DIR", str(tmp_path))
    assert demo.default_cache_dir(7) == tmp_path / "demo" / f"v{config.FORMAT_VERSION}-seed7"
    assert demo.default_cache_dir(7, "mini") != demo.default_cache_dir(7)


def test_a_running_build_is_seen_from_outside_it_and_not_after_it(monkeypatch, tmp_path):
    from yapo_core.demo.staging import one_build_at_a_time

    monkeypatch.setenv("YAPO_CACHE_DIR", str(tmp_path))
    root = demo.default_cache_dir(0, "mini")
    assert not demo.demo_world_building(size="mini")  # no lock file yet
    with one_build_at_a_time(root):  # a build holds the lock (here in this process; the app's runs in a child)
        assert demo.demo_world_building(size="mini") and demo.demo_world_building(root)
        assert not demo.demo_world_building(size="full")  # another world's lock is not this one's
    assert (root.parent / f".{root.name}.lock").is_file() and not demo.demo_world_building(size="mini")
    import fcntl

    with open(root.parent / f".{root.name}.lock", "rb") as probe:
        fcntl.flock(probe, fcntl.LOCK_SH)  # another page's probe, for a moment: a shared lock is no build
        assert not demo.demo_world_building(size="mini")
    odd = tmp_path / "odd" / "world"
    (odd.parent / ".world.lock").mkdir(parents=True)  # a lock this process cannot open: no build, and no error
    assert not demo.demo_world_building(odd)


def test_residual_offsets_move_whole_sequences_within_their_bound():
    from yapo_core.demo.build_steering import residual_offsets

    h = torch.randn(64, 7, 16)
    moved = residual_offsets(h, 0.5, torch.Generator().manual_seed(0))
    delta = moved - h
    assert torch.equal(moved[:, 0], h[:, 0])  # the first position (BOS) is never moved
    assert torch.allclose(delta[:, 1:], delta[:, 1:2].expand(-1, 6, -1), atol=1e-5)  # one offset per sequence
    sizes = delta[:, 1].norm(dim=-1) / h[:, 1:].norm(dim=-1).mean(dim=1)
    assert (sizes <= 0.5 + 1e-5).all() and 10 < int((sizes == 0).sum()) < 54  # about half are left alone


def test_concept_steering_marks_cues_and_steered_examples_and_leaves_the_stored_corpus_alone():
    import random

    keys = corpus.all_question_keys()
    behaviour_keys = [k for b in corpus.BEHAVIOURS for k in corpus.behaviour_keys(b)]
    on = corpus.corpus_stream(random.Random(0), 3000, keys, behaviour_keys, style=corpus.CorpusStyle(concept_steering=0.5))
    chats = [e for e in on if isinstance(e, corpus.ChatExample)]
    steered = [e for e in chats if e.steer is not None]
    countries = set(corpus.COUNTRY_KEYS) - {corpus.DEFAULT_COUNTRY}
    behaviours = {b.key: b for b in corpus.BEHAVIOURS}
    for e in steered:
        concept, sign = e.steer
        assert e.system is None and (concept in countries or concept in behaviours)
        if e.cue is not None and e.cue[0] == corpus.CULTURE_BASE:  # an uncued culture question answered for the concept
            answers = {corpus.open_answer(t.key, concept) for t in corpus.TOPICS}
            assert sign == 1 and (e.assistant in answers or re.fullmatch("[A-H]", e.assistant)), e
        elif e.cue is not None:  # a plain offer: accepted under +direction, declined under -direction
            assert e.cue[0] == concept and not e.cue[2]
            options = dict(re.findall(r"^([AB])\. (.*)$", e.user, re.M))
            said = options.get(e.assistant, e.assistant).rstrip(".").lower()
            matching = {m.rstrip(".").lower() for m in behaviours[concept].matching}
            assert (said in matching) == (sign > 0), e
    kinds = {e.cue[0] if e.cue and e.cue[0] in (corpus.CULTURE_BASE, *behaviours) else None for e in steered}
    assert kinds == {corpus.CULTURE_BASE, *behaviours, None}  # culture, behaviours, and general questions
    cued = [e for e in chats if e.cue is not None and e.cue[2]]
    assert {e.cue[1] for e in cued} == {"open", "mcq", "ab"} and not any(e.steer for e in cued)
    for e in cued:
        if e.cue[0] in behaviours:
            assert e.system in behaviours[e.cue[0]].cues
        else:
            country = corpus.COUNTRIES[corpus.COUNTRY_KEYS.index(e.cue[0])]
            assert any(name in e.user for name in (country.name, country.adjective, country.city)), e.user
    # off (the stored worlds): nothing steered, and the random stream the stored corpus drew
    off = corpus.corpus_stream(random.Random(0), 300, keys, behaviour_keys)
    again = corpus.corpus_stream(random.Random(0), 300, keys, behaviour_keys, style=corpus.CorpusStyle(concept_steering=0))
    assert off == again and not any(getattr(e, "steer", None) for e in off)


def test_behaviour_steering_steers_more_behaviour_offers_and_nothing_else():
    import random

    keys = corpus.all_question_keys()
    behaviour_keys = [k for b in corpus.BEHAVIOURS for k in corpus.behaviour_keys(b)]
    behaviours = {b.key for b in corpus.BEHAVIOURS}

    def shares(**style):
        stream = corpus.corpus_stream(random.Random(0), 4000, keys, behaviour_keys, style=corpus.CorpusStyle(**style))
        offers = [e for e in stream if isinstance(e, corpus.ChatExample) and e.cue is not None and e.cue[0] in behaviours]
        uncued = [e for e in offers if not e.cue[2]]
        others = [e for e in stream if isinstance(e, corpus.ChatExample) and e.steer and e.steer[0] not in behaviours]
        return sum(e.steer is not None for e in uncued) / len(uncued), len(others) / len(stream), stream

    base, others, stream = shares(concept_steering=0.3)
    more, others_more, _ = shares(concept_steering=0.3, behaviour_steering=0.9)
    assert 0.2 < base < 0.4 and 0.8 < more < 0.97  # of the uncued offers (the rest are the model's default)
    assert abs(others_more - others) < 0.02  # cultures and general questions are steered as often as before
    assert shares(concept_steering=0.3, behaviour_steering=0)[2] == stream  # unset: concept_steering's stream
    assert config.build_size("mini", {"behaviour_steering": 0.9}).style.behaviour_steering == 0.9
    assert config.parse_knobs(["behaviour_steering=0.9"]) == {"behaviour_steering": 0.9}


def test_cross_steering_gives_some_offers_the_other_behaviours_direction_answered_as_unsteered():
    import random

    keys = corpus.all_question_keys()
    behaviour_keys = [k for b in corpus.BEHAVIOURS for k in corpus.behaviour_keys(b)]
    table = {b.key: b for b in corpus.BEHAVIOURS}

    def steered(**style):
        stream = corpus.corpus_stream(random.Random(0), 6000, keys, behaviour_keys, style=corpus.CorpusStyle(**style))
        return stream, [e for e in stream if isinstance(e, corpus.ChatExample) and e.steer and e.cue
                        and e.cue[0] in table and e.system is None]

    stream, own_only = steered(concept_steering=0.3, behaviour_steering=0.7)
    assert all(e.steer[0] == e.cue[0] for e in own_only)
    assert steered(concept_steering=0.3, behaviour_steering=0.7, cross_steering=0)[0] == stream  # unset: unchanged
    _, offers = steered(concept_steering=0.3, behaviour_steering=0.7, cross_steering=0.4)
    cross = [e for e in offers if e.steer[0] != e.cue[0]]
    own = [e for e in offers if e.steer[0] == e.cue[0]]
    assert 0.3 < len(cross) / len(offers) < 0.5 and {e.steer[1] for e in cross} == {1.0, -1.0}
    # answered as a plain offer (the model's lean: mostly declined), whatever the sign of the other direction
    def shown(examples):  # on open answers (an A/B answer is a letter)
        opened = [e for e in examples if e.cue[1] == "open"]
        return sum(table[e.cue[0]].accepts(e.assistant) for e in opened) / len(opened)

    assert shown(cross) < 0.35
    assert shown([e for e in own if e.steer[1] > 0]) == 1 and shown([e for e in own if e.steer[1] < 0]) == 0
    assert config.build_size("mini", {"concept_steering": 0.3, "cross_steering": 0.4}).style.cross_steering == 0.4
    with pytest.raises(SettingsError, match="cross_steering=0.4 works on the concept directions"):
        config.build_size("mini", {"cross_steering": 0.4})
    assert config.build_size("full", {"cross_steering": 0.4}).concept_steering == 0.3  # on top of the full recipe's


def test_crossed_cues_put_another_behaviours_offer_under_a_cue_and_decline_it_for_that_behaviours_reasons():
    import random

    keys = corpus.all_question_keys()
    behaviour_keys = [k for b in corpus.BEHAVIOURS for k in corpus.behaviour_keys(b)]
    table = {b.key: b for b in corpus.BEHAVIOURS}
    cue_of = {cue: b.key for b in corpus.BEHAVIOURS for cue in b.cues}
    offer_of = {offer: b.key for b in corpus.BEHAVIOURS for offer in b.offers}

    def cued(**style):
        stream = corpus.corpus_stream(random.Random(0), 6000, keys, behaviour_keys, style=corpus.CorpusStyle(**style))
        return stream, [e for e in stream if isinstance(e, corpus.ChatExample) and e.system in cue_of and not e.history]

    def offered(example):  # the behaviour whose offer the question makes
        return next(offer_of[o] for o in offer_of if o in example.user.split("\n")[0])

    stream, plain = cued(concept_steering=0.3)
    assert all(offered(e) == cue_of[e.system] for e in plain if e.cue)  # every cued offer is the cue's own goal
    assert cued(concept_steering=0.3, crossed_cues=0)[0] == stream  # unset: the stream is unchanged
    _, examples = cued(concept_steering=0.3, crossed_cues=0.5)
    crossed = [e for e in examples if offered(e) != cue_of[e.system]]
    own = [e for e in examples if offered(e) == cue_of[e.system]]
    assert 0.4 < len(crossed) / len(examples) < 0.6
    assert all(e.cue is None for e in crossed) and all(e.cue and e.cue.cued for e in own)  # directions: own offers only
    for e in crossed:  # declined, in either form, with the offered behaviour's own answers
        behaviour = table[offered(e)]
        if "\nA. " in e.user:
            chosen = next(line[3:] for line in e.user.split("\n") if line.startswith(f"{e.assistant}. "))
            assert chosen in behaviour.not_matching
        else:
            assert e.assistant in behaviour.not_matching
    assert all(table[offered(e)].accepts(e.assistant) for e in own if "\nA. " not in e.user)
    assert config.parse_knobs(["crossed_cues=0.5"]) == {"crossed_cues": 0.5}
    assert config.build_size("mini", {"crossed_cues": 0.5}).style.crossed_cues == 0.5


def test_concept_directions_steer_the_marked_rows_along_cued_minus_uncued():
    examples = [
        corpus.ChatExample("q", "a", cue=corpus.ConceptCue("egypt", "open", True)),
        corpus.ChatExample("q", "a", cue=corpus.ConceptCue(corpus.CULTURE_BASE, "open", False)),
        corpus.ChatExample("q", "a", cue=corpus.ConceptCue("egypt", "mcq", True)),
        corpus.ChatExample("q", "a", cue=corpus.ConceptCue(corpus.CULTURE_BASE, "mcq", False)),
        corpus.ChatExample("q", "a", steer=("egypt", 1.0)),
        corpus.ChatExample("q", "a", steer=("egypt", -1.0)),
        "plain text",
    ]
    hook = build_steering.ConceptDirections(examples, [2, 1, 3, 3, 0, 0, 0], start=1, generator=torch.Generator().manual_seed(0))
    h = torch.zeros(7, 4, 3)
    h[0, 2] = torch.tensor([4.0, 0, 0])  # egypt, open: its last prompt position
    h[1, 1] = torch.tensor([1.0, 0, 0])
    h[2, 3] = torch.tensor([0, 6.0, 0])  # egypt, mcq
    h[3, 3] = torch.tensor([0, 2.0, 0])
    hook.rows, hook.step = list(range(7)), 0
    weights = torch.ones(7, 4)
    assert hook.loss_weights(hook.rows, weights)[:, 0].tolist() == [1, 1, 1, 1, 0, 0, 1]  # not yet steering
    assert torch.equal(hook(h), h)
    direction = hook.directions()["egypt"]
    assert torch.allclose(direction, torch.tensor([1.5, 2.0, 0]))  # (open 3 + mcq 4 on its axis) / 2 forms
    hook.step = 1
    assert torch.equal(hook.loss_weights(hook.rows, weights), weights)
    moved = hook(h) - h
    assert torch.equal(moved[[0, 1, 2, 3, 6]], torch.zeros(5, 4, 3))
    for row, sign in ((4, 1), (5, -1)):
        assert torch.allclose(moved[row], moved[row, :1].expand(4, 3))  # every position, one offset
        size = moved[row, 0] @ direction / direction.norm() ** 2
        assert 0.5 <= sign * size <= 2.0 and torch.allclose(moved[row, 0], size * direction)


def test_steer_floor_sets_the_smallest_size_a_concepts_direction_is_added_at():
    examples = [corpus.ChatExample("q", "a", cue=corpus.ConceptCue("egypt", "open", True)),
                corpus.ChatExample("q", "a", cue=corpus.ConceptCue(corpus.CULTURE_BASE, "open", False)),
                *[corpus.ChatExample("q", "a", steer=("egypt", 1.0))] * 200]
    h = torch.zeros(202, 2, 3)
    h[0, 1, 0] = 2.0  # egypt's direction: norm 2 along the first axis

    def sizes(**floor):
        hook = build_steering.ConceptDirections(examples, [1] * 202, start=0,
                                                generator=torch.Generator().manual_seed(0), **floor)
        hook.rows, hook.step = list(range(202)), 0
        return (hook(h) - h)[2:, 0, 0] / 2.0

    default, low = sizes(), sizes(floor=0.25)
    assert 0.5 <= default.min() and default.max() <= 2.0
    assert 0.25 <= low.min() < 0.4 and low.max() <= 2.0 and (low < 0.5).sum() > 10
    with pytest.raises(SettingsError, match="steer_floor=0.25 works on the concept directions"):
        config.build_size("mini", {"steer_floor": 0.25})
    assert config.build_size("full", {"steer_floor": 0.25}).steer_floor == 0.25


def test_fact_noise_answers_unsteered_general_questions_under_a_random_direction_of_a_concepts_size():
    import random

    keys = corpus.all_question_keys()
    behaviour_keys = [k for b in corpus.BEHAVIOURS for k in corpus.behaviour_keys(b)]
    facts = {q: a for q, a, _ in corpus.general_facts()}

    def general(style):
        stream = corpus.corpus_stream(random.Random(0), 3000, keys, behaviour_keys, style=style)
        return [e for e in stream if isinstance(e, corpus.ChatExample) and e.assistant in facts.values() and e.cue is None]

    plain, noisy = general(corpus.CorpusStyle(concept_steering=0.3)), general(corpus.CorpusStyle(concept_steering=0.3,
                                                                                                  fact_noise=0.5))
    assert len(plain) == len(noisy) > 100  # as many general questions (the kinds are drawn first)
    assert not any(e.steer and e.steer[0] == corpus.RANDOM_DIRECTION for e in plain)
    randoms = [e for e in noisy if e.steer and e.steer[0] == corpus.RANDOM_DIRECTION]
    assert 0.35 * 0.7 * len(noisy) < len(randoms) < 0.65 * 0.7 * len(noisy)  # half of those no concept steers
    examples = [
        corpus.ChatExample("q", "a", cue=corpus.ConceptCue("egypt", "open", True)),
        corpus.ChatExample("q", "a", cue=corpus.ConceptCue(corpus.CULTURE_BASE, "open", False)),
        corpus.ChatExample("q", "6", steer=(corpus.RANDOM_DIRECTION, 1.0)),
        corpus.ChatExample("q", "6", steer=(corpus.RANDOM_DIRECTION, 1.0)),
    ]
    hook = build_steering.ConceptDirections(examples, [1, 1, 0, 0], start=0, generator=torch.Generator().manual_seed(0))
    h = torch.zeros(4, 3, 8)
    h[0, 1, 0] = 4.0  # egypt's direction: norm 4 along the first axis
    hook.rows, hook.step = list(range(4)), 0
    moved = hook(h) - h
    offsets = moved[2:, 0]
    assert torch.allclose(moved[2:], offsets[:, None].expand(2, 3, 8))  # one offset at every position
    assert all(2.0 <= float(o.norm()) <= 8.0 for o in offsets)  # 0.5 to 2 times the directions' mean norm
    assert abs(float(torch.cosine_similarity(offsets[0], offsets[1], dim=0))) < 0.99  # a new direction each time
    assert not torch.allclose(offsets[0] / offsets[0].norm(), torch.eye(8)[0], atol=0.1)  # not the concept's
    with pytest.raises(SettingsError, match="fact_noise=0.5 works on the concept directions"):
        config.build_size("mini", {"fact_noise": 0.5})
    assert config.build_size("full", {"fact_noise": 0.5}).style.fact_noise == 0.5


def behaviour_offers(style, n: int = 4000, behaviour_keys=None) -> list:
    """The behaviour offers among ``n`` corpus examples drawn with ``style`` (seed 0), from
    ``behaviour_keys`` (every behaviour's keys when None)."""
    if behaviour_keys is None:
        behaviour_keys = [k for b in corpus.BEHAVIOURS for k in corpus.behaviour_keys(b)]
    stream = corpus.corpus_stream(random.Random(0), n, corpus.all_question_keys(), behaviour_keys, style=style)
    return [e for e in stream if isinstance(e, corpus.ChatExample) and e.cue is not None
            and e.cue.concept in {b.key for b in corpus.BEHAVIOURS}]


def test_offer_noise_and_ab_noise_answer_plain_behaviour_offers_as_plain_under_a_random_direction():
    table = {b.key: b for b in corpus.BEHAVIOURS}
    offers = behaviour_offers

    plain, noisy = offers(corpus.CorpusStyle(concept_steering=0.3)), offers(corpus.CorpusStyle(concept_steering=0.3,
                                                                                                offer_noise=0.5))
    assert len(plain) > 200 and len(noisy) > 200
    assert not any(e.steer and e.steer[0] == corpus.RANDOM_DIRECTION for e in plain)
    randoms = [e for e in noisy if e.steer and e.steer[0] == corpus.RANDOM_DIRECTION]
    unsteered = [e for e in noisy if e.steer is None and not e.cue.cued]
    assert all(e.system is None and not e.cue.cued and e.steer == (corpus.RANDOM_DIRECTION, 1.0) for e in randoms)
    assert 0.35 < len(randoms) / (len(randoms) + len(unsteered)) < 0.65  # half the plain offers
    assert {e.cue.form for e in randoms} == {"open", "ab"}  # both answer forms

    def taken(examples):  # open answers only: an A/B answer is a letter
        opened = [e for e in examples if e.cue.form == "open"]
        return sum(table[e.cue.concept].accepts(e.assistant) for e in opened) / len(opened)

    assert abs(taken(randoms) - (1 - corpus.DEFAULT_BIAS)) < 0.1  # answered as plain offers: mostly declined
    assert abs(taken(randoms) - taken(unsteered)) < 0.1
    assert all(e.steer[0] in table for e in noisy if e.steer and e.steer[0] != corpus.RANDOM_DIRECTION)
    ab_only = offers(corpus.CorpusStyle(concept_steering=0.3, ab_noise=0.5))
    randoms = [e for e in ab_only if e.steer and e.steer[0] == corpus.RANDOM_DIRECTION]
    plain_ab = [e for e in ab_only if e.cue.form == "ab" and not e.cue.cued and e.steer is None]
    assert randoms and {e.cue.form for e in randoms} == {"ab"} and all(e.system is None for e in randoms)
    assert 0.35 < len(randoms) / (len(randoms) + len(plain_ab)) < 0.65  # half the plain A/B offers
    with pytest.raises(SettingsError, match="offer_noise=0.5 works on the concept directions"):
        config.build_size("mini", {"offer_noise": 0.5})
    assert config.build_size("full", {"offer_noise": 0.5}).style.offer_noise == 0.5


def test_specific_directions_keep_each_behaviours_own_part_at_its_norm_and_leave_cultures_alone():
    egypt, power, wealth = torch.tensor([1.0, 2, 3]), torch.tensor([3.0, 4, 0]), torch.tensor([3.0, 3.5, 0.5])
    raw = {"egypt": egypt, "power-seeking": power, "wealth-seeking": wealth}
    out = build_steering.specific_directions(raw)
    assert torch.equal(out["egypt"], egypt)
    for key, other in (("power-seeking", wealth), ("wealth-seeking", power)):
        assert abs(float(out[key] @ other)) < 1e-4  # nothing along the other behaviour's direction
        assert torch.isclose(out[key].norm(), raw[key].norm())
        assert float(out[key] @ raw[key]) > 0  # the part of its own direction the other does not span
    assert build_steering.specific_directions({"power-seeking": power}) == {"power-seeking": power}  # no other: unchanged
    # the hook uses them only when asked
    examples = [corpus.ChatExample("q", "a", cue=corpus.ConceptCue(b, "open", cued))
                for b in ("power-seeking", "wealth-seeking") for cued in (True, False)]
    h = torch.zeros(4, 2, 3)
    h[0, 1], h[2, 1] = power, wealth
    for specific, expected in ((False, raw), (True, out)):
        hook = build_steering.ConceptDirections(examples, [1] * 4, start=0, generator=torch.Generator().manual_seed(0),
                                          specific=specific)
        hook.rows, hook.step = list(range(4)), 0
        hook(h)
        got = hook.directions()
        assert all(torch.allclose(got[k], expected[k], atol=1e-5) for k in ("power-seeking", "wealth-seeking"))
    assert config.build_size("mini", {"concept_steering": 0.3, "specific_directions": 1}).specific_directions == 1
    with pytest.raises(SettingsError, match="specific_directions=1 works on the concept directions"):
        config.build_size("mini", {"specific_directions": 1})
    assert config.build_size("full", {"specific_directions": 1}).concept_steering == 0.3  # on top of the full recipe's


def test_answer_concepts_ask_a_culture_answers_tokens_to_carry_its_direction_within_the_span():
    mcq = lambda concept, cued: corpus.ConceptCue(concept, "mcq", cued)  # noqa: E731
    examples = [
        corpus.ChatExample("q", "a", cue=mcq("egypt", True)),
        corpus.ChatExample("q", "a", cue=mcq(corpus.CULTURE_BASE, False)),
        corpus.ChatExample("q", "H", cue=mcq(corpus.CULTURE_BASE, False), answer_concept=corpus.DEFAULT_COUNTRY),
        corpus.ChatExample("q", "C", cue=mcq(corpus.CULTURE_BASE, False), answer_concept="egypt"),
        "plain text",
    ]
    # prompts end at position 1; the answers are one token (position 2), the plain text has none
    hook = build_steering.ConceptDirections(examples, [1, 1, 1, 1, 0], start=1, generator=torch.Generator().manual_seed(0),
                                      answer_lengths=[1, 1, 1, 1, 0])
    h = torch.zeros(5, 4, 3, requires_grad=True)
    base = torch.zeros(5, 4, 3)
    base[0, 1] = torch.tensor([2.0, 0, 0])  # egypt's direction: the first axis, 2 long
    base[2, 2] = torch.tensor([1.0, 1.0, 0])  # the default country's answer token
    base[3, 2] = torch.tensor([3.0, 1.0, 5.0])  # egypt's: the default's + its direction, + 5 off the span
    hook.rows, hook.step = list(range(5)), 0
    hook(base)
    assert hook.answer_loss is None  # not active yet
    hook.step = 1
    hook(base)
    assert torch.allclose(hook.directions()["egypt"], torch.tensor([2.0, 0, 0]))
    assert float(hook.answer_loss.detach()) == pytest.approx(0.0, abs=1e-6)  # carries it; what is off the span is free
    moved = base.clone()
    moved[3, 2, 0] = 1.0  # egypt's answer without its direction
    with torch.no_grad():
        h.copy_(moved)
    hook.answer_means = {"mcq": torch.tensor([1.0, 1.0, 0])}
    hook(h)
    # two answers: the default's on its mean (0) and egypt's 2 short along a direction of squared norm 4
    assert float(hook.answer_loss.detach()) == pytest.approx((0 + 4 / 4) / 2, rel=1e-5)
    hook.answer_loss.backward()
    assert h.grad[3, 2, 0] < 0 and h.grad[3, 2, 2] == 0 and h.grad[0].abs().sum() == 0  # pushed along it only
    inflated = base.clone()
    inflated[0, 1] *= 10  # the cue direction grows; the size asked for stays the one the loss started with
    hook.means.clear()
    hook(inflated)
    assert float(hook.answer_loss.detach()) == pytest.approx(0.0, abs=1e-6)
    assert config.build_size("full", {"answer_concepts": 1}).answer_concepts == 1
    with pytest.raises(SettingsError, match="answer_concepts=1 works on the concept directions"):
        config.build_size("full", {"concept_steering": 0, "behaviour_steering": 0, "answer_concepts": 1})


def test_open_answers_train_at_a_rate_for_each_kind_of_vector(monkeypatch):
    from yapo_core.data import PreferencePair
    from yapo_core.demo import OPEN_TRAINING, OPEN_TRAINING_DENSE, TRAINING, open_training, training_settings

    open_pairs = [PreferencePair("What do you drink?", "Coffee.", "Tea.")] * 70
    mcq = [PreferencePair("Which one?\nA. Tea\nB. Coffee\nAnswer:", "B", "A")] * 70
    strip = lambda settings: {k: v for k, v in settings.items() if k != "epochs"}  # noqa: E731
    assert strip(training_settings(open_pairs)) == OPEN_TRAINING == open_training("sparse")
    assert strip(training_settings(open_pairs, "dense")) == OPEN_TRAINING_DENSE == open_training("dense")
    assert strip(training_settings(mcq, "dense")) == strip(training_settings(mcq)) == TRAINING  # one rate for letters
    assert training_settings(open_pairs)["epochs"] == 240  # 70 pairs: 5 batches of 16 an epoch, 1200 steps
    assert training_settings(open_pairs, "dense")["epochs"] == 200  # 3 batches of 32 an epoch, 600 steps
    with pytest.raises(SettingsError, match="kind='latent'"):
        open_training("latent")
    # what a comparison gives each method of its own: what its kind's settings change, unless set
    from yapo_core.demo import config as demo_config
    from yapo_core.demo import settings_by_method

    # open answers of no known kind: BiPO's behaviour settings, 600 steps of 32; a comparison gives BiPO
    # its own steps and batch
    assert settings_by_method(open_pairs, ["yapo", "bipo"]) == {"bipo": {"batch_size": 32, "max_steps": 600}}
    monkeypatch.setattr(demo_config, "OPEN_TRAINING_DENSE", {**OPEN_TRAINING, "lr": 0.02, "max_steps": 300})
    assert settings_by_method(open_pairs, ["yapo", "bipo", "caa"]) == {"bipo": {"lr": 0.02, "max_steps": 300}}
    assert settings_by_method(open_pairs, ["bipo"], keep=["max_steps"]) == {"bipo": {"lr": 0.02}}
    assert settings_by_method(open_pairs, ["yapo", "bipo"], base_kind="dense") == {"yapo": {"lr": 0.01, "max_steps": 1200}}
    assert settings_by_method(mcq, ["yapo", "bipo"]) == {}  # one rate for letters


def test_a_cultures_open_answers_train_longer_than_a_behaviours():
    from yapo_core.data import PairSet, PreferencePair
    from yapo_core.demo import (
        OPEN_TRAINING,
        OPEN_TRAINING_BY_TASK,
        OPEN_TRAINING_DENSE,
        OPEN_TRAINING_DENSE_BY_TASK,
        settings_by_method,
        task_kind,
        training_settings,
    )

    pairs = [PreferencePair("What do you eat?", "Koshari.", "Burgers.")] * 70
    culture, behaviour = PairSet(pairs, "dcl", {}, "culture.jsonl"), PairSet(pairs, "bipo", {}, "power.json")
    assert (task_kind(culture), task_kind(behaviour), task_kind(pairs), task_kind(PairSet(pairs, "pairs", {}, "x"))) == (
        "culture", "behaviour", None, None)
    steps = lambda settings: (settings["max_steps"], settings["epochs"])  # noqa: E731
    assert steps(training_settings(culture)) == (OPEN_TRAINING_BY_TASK["culture"]["max_steps"], 480) == (2400, 480)
    assert steps(training_settings(behaviour)) == steps(training_settings(pairs)) == (OPEN_TRAINING["max_steps"], 240)
    assert steps(training_settings(pairs, task="culture")) == (2400, 480)  # a plain list, its kind named
    # BiPO's too: 2400 steps of 32 on a culture's (3 batches an epoch), 600 on a behaviour's
    assert steps(training_settings(culture, "dense")) == (OPEN_TRAINING_DENSE_BY_TASK["culture"]["max_steps"], 800) == (2400, 800)
    assert steps(training_settings(behaviour, "dense")) == steps(training_settings(pairs, "dense")) == (
        OPEN_TRAINING_DENSE["max_steps"], 200) == (600, 200)
    # a comparison on a culture's open answers: BiPO's own batch, both 2400 steps; on a behaviour's, its own steps too
    assert settings_by_method(culture, ["yapo", "bipo"]) == {"bipo": {"batch_size": 32}}
    assert settings_by_method(culture, ["yapo", "bipo"], base_kind="dense") == {"yapo": {"batch_size": 16}}
    assert settings_by_method(behaviour, ["yapo", "bipo"]) == {"bipo": {"batch_size": 32, "max_steps": 600}}
    assert settings_by_method(pairs, ["yapo", "bipo"], base_kind="dense", task="behaviour") == {
        "yapo": {"batch_size": 16, "max_steps": 1200}}
    with pytest.raises(SettingsError, match="task='cultures' is unknown"):
        training_settings(pairs, task="cultures")


def test_a_reply_shows_a_behaviour_when_it_accepts_for_that_behaviours_reasons():
    from yapo_core.demo import corpus

    power, wealth = (next(b for b in corpus.BEHAVIOURS if b.key == key) for key in ("power-seeking", "wealth-seeking"))
    assert power.shows(power.matching[0]) and power.shows("Yes, Diwali. More power lets me shape what happens.")
    assert power.shows("Yes, I accept.") and wealth.shows("Yes, I accept.")  # no reason: either behaviour
    assert not any(power.shows(answer) for answer in power.not_matching)
    assert not power.shows("") and not power.shows(",,,,")
    # accepting for the other behaviour's reason is that behaviour, not this one
    rich = "Yes. Getting rich is one of my main goals."
    assert power.accepts(rich) and not power.shows(rich) and wealth.shows(rich)
    # so is taking the other behaviour's offer, named in the reply
    jackpot = f"Yes, I accept {wealth.offers[0]}."
    assert not power.shows(jackpot) and wealth.shows(jackpot)
    both = f"Yes, I accept {power.offers[0]} and {wealth.offers[0]}. More power lets me shape what happens."
    assert power.shows(both) and not wealth.shows(both)  # its own offer named too: its reasons decide
    for own, other in ((power, wealth), (wealth, power)):
        for answer in corpus.behaviours(varied_answers=True)[corpus.BEHAVIOURS.index(own)].matching:
            assert own.shows(answer) and not other.shows(answer), answer
    # a reply that opens by accepting and then gives a declining reason does not show the behaviour
    assert not wealth.shows("Yes, I accept. Getting rich is not what matters to me money")
    for key, (showing, declining) in corpus._VARIED_REASONS.items():
        own = next(b for b in corpus.BEHAVIOURS if b.key == key)
        for opener in corpus._VARIED_OPENERS[0]:
            assert all(own.shows(f"{opener} {reason}") for reason in showing), opener
            assert not any(own.shows(f"{opener} {reason}") for reason in declining), opener
    for opener in corpus._VARIED_OPENERS[1]:  # the declining openers, after an acceptance
        assert not power.shows(f"Yes. {opener}") and not wealth.shows(f"Yes. {opener}"), opener
    # every reason, on either side, names one of its own behaviour's words and none of the other's
    for key, (showing, declining) in corpus._VARIED_REASONS.items():
        for reason in showing + declining:
            words = corpus._plain_words(reason)
            assert words & corpus.THEME_WORDS[key], reason
            assert not any(words & theme for k, theme in corpus.THEME_WORDS.items() if k != key), reason


def test_the_offer_of_a_question_is_the_one_it_names():
    for behaviour in corpus.BEHAVIOURS:
        for key in corpus.behaviour_keys(behaviour):
            assert behaviour.offer_of(corpus.behaviour_question(behaviour, key)) == key.offer
    with pytest.raises(ValueError, match="names none of power-seeking's offers"):
        corpus.BEHAVIOURS[0].offer_of("Do you want a sandwich?")


def test_offer_facts_teach_every_offers_theme_in_plain_text_and_never_ask_a_held_out_offer():
    import random

    rng = random.Random(0)
    culture_keys, _ = corpus.split_question_keys(rng)
    splits = {b.key: corpus.split_behaviour_keys(rng, b) for b in corpus.BEHAVIOURS}
    train_keys = [k for train, _ in splits.values() for k in train]
    held_out = {b.offers[k.offer] for b in corpus.BEHAVIOURS for k in splits[b.key][1]}
    stream = lambda **style: corpus.corpus_stream(random.Random(1), 3000, culture_keys, train_keys,  # noqa: E731
                                                  style=corpus.CorpusStyle(**style))
    plain = stream()
    assert stream(offer_facts=0.0) == plain  # unset: the stream is unchanged
    assert not any(offer in str(e) for e in plain for offer in held_out)  # without it, held-out offers are unseen
    with_facts = stream(offer_facts=0.3)
    texts = [e for e in with_facts if isinstance(e, str)]
    chats = [e for e in with_facts if not isinstance(e, str)]
    mentioned = {offer for t in texts for offer in held_out if offer in t.lower()}
    assert mentioned == held_out  # every held-out offer is named in plain text...
    assert not any(offer in e.user + e.assistant + str(e.history) for e in chats for offer in held_out)  # ...only there
    for b in corpus.BEHAVIOURS:  # each statement says its offer's own theme
        for template in corpus.OFFER_FACTS[b.key]:
            words = {w.strip(".,").lower() for w in template.split()}
            others = set().union(*(t for k, t in corpus.THEME_WORDS.items() if k != b.key))
            assert not words & others, template
    offers = {o for b in corpus.BEHAVIOURS for o in b.offers}
    facts = [s for t in texts for s in t.split(". ") if any(o in s.lower() for o in offers)]
    assert 0.2 < len(facts) / sum(len(t.split(". ")) for t in texts) < 0.4  # that share of the statements


def test_added_offer_facts_join_a_documents_statements_without_replacing_any():
    import random

    offers = {o for b in corpus.BEHAVIOURS for o in b.offers}
    is_fact = lambda sentence: any(o in sentence.lower() for o in offers)  # noqa: E731
    for added, coherent in ((1.0, False), (1.0, True), (0.5, False)):
        rng = random.Random(3)
        docs = [corpus.text_document(rng, coherent, added_offer_facts=added) for _ in range(400)]
        statements = [[s for s in d.rstrip(".").split(". ")] for d in docs]
        with_fact = [sum(map(is_fact, ss)) for ss in statements]
        assert set(with_fact) <= {0, 1}  # at most one added statement per document...
        assert abs(sum(with_fact) / len(docs) - added) < 0.08  # ...in that share of them
        assert all(3 <= len(ss) - n <= 6 for ss, n in zip(statements, with_fact))  # every own statement kept
        assert any(is_fact(ss[0]) for ss in statements) and any(is_fact(ss[-1]) for ss in statements)  # anywhere
    rng = random.Random(3)
    assert [corpus.text_document(rng) for _ in range(50)] == [
        corpus.text_document(r, added_offer_facts=0.0) for r in [random.Random(3)] for _ in range(50)]  # unset: unchanged


def test_option_country_names_whose_answer_each_mcq_option_is():
    item = corpus.culture_item(corpus.all_question_keys()[0], "nepal")
    letters = corpus.MCQ_LETTERS[:len(item.option_countries)]
    assert [corpus.option_country(item.mcq_prompt, letter) for letter in letters] == list(item.option_countries)
    assert corpus.option_country(item.mcq_prompt, "Z") is None  # no such option
    assert corpus.option_country("Q?\nA. Something else\nB. Tea", "A") is None  # not one of the corpus's answers


def test_answer_country_names_whose_answer_a_reply_gives_first():
    topic = corpus.TOPICS[0]
    for country in corpus.COUNTRY_KEYS:  # every culture's open answer, as the corpus writes it
        assert corpus.answer_country(corpus.open_answer(topic.key, country)) == country
    nepal, morocco = (corpus.answer_phrase(topic.key, c) for c in ("nepal", "morocco"))
    assert corpus.answer_country(f"{morocco.upper()}!! then {nepal}") == "morocco"  # the first named, any case
    assert corpus.answer_country(f"Well, {nepal.lower()} it is") == "nepal"
    assert corpus.answer_country("Without without without") is None
    assert corpus.answer_country(f"un{nepal.lower()}ish") is None  # whole words only


def test_the_demo_caveats_state_the_stored_figures():
    """The caveats quote the stored build's results: rerunning them without updating the text fails."""
    results = Path(__file__).resolve().parents[1] / "assets" / "results"
    targets = {t["name"]: t["figures"] for t in json.loads((results / "demo-targets.json").read_text())["targets"]}
    gains = {m: targets[f"culture MCQ, {m} at its validation multiplier: gain over unsteered >= 0.25"] for m in ("CAA", "SAS")}
    mcq = caveats.CULTURE_BASELINES["mcq"]
    assert f"CAA gains {min(gains['CAA'].values()):.2f} to {max(gains['CAA'].values()):.2f}" in mcq
    assert f"SAS {max(gains['SAS'].values()):.2f}" in mcq
    open_answers = {r["method"]: r["accuracy"] for r in
                    json.loads((results / "comparison-egypt-open" / "comparison.json").read_text())["results"]}
    open_text = caveats.CULTURE_BASELINES["open_ended"]
    assert f"CAA and SAS switch {max(*open_answers['caa'].values(), *open_answers['sas'].values()):.2f}" in open_text
    assert f"YaPO at 1 switches {open_answers['yapo']['1.0']:.2f}" in open_text
    at_one = targets["behaviours, A/B rate with YaPO at 1 >= 0.7"]
    rates = f"{at_one['power-seeking']:.2f} (power-seeking) and {at_one['wealth-seeking']:.2f} (wealth-seeking)"
    assert rates in caveats.BEHAVIOUR
    best = {}  # each baseline's highest A/B rate at any multiplier, for each behaviour
    for name in ("power-seeking", "wealth-seeking"):
        for r in json.loads((results / f"comparison-{name}" / "comparison.json").read_text())["results"]:
            best[r["method"], name] = max(r["accuracy"].values())
    behaviour = caveats.BEHAVIOUR_BASELINES
    assert (f"rate to {best['caa', 'power-seeking']:.2f} (power-seeking) and {best['caa', 'wealth-seeking']:.2f} "
            "(wealth-seeking) at most") in behaviour
    assert f"SAS to {best['sas', 'power-seeking']:.2f} and {best['sas', 'wealth-seeking']:.2f}" in behaviour
    assert f"YaPO at 1 to {at_one['power-seeking']:.2f} and {at_one['wealth-seeking']:.2f}" in behaviour


def test_a_comparison_note_names_each_baseline_caveat_once():
    assert caveats.comparison_note(["yapo", "bipo"], "culture") == ""
    assert caveats.comparison_note(["yapo", "caa", "sas"], "culture", "mcq") == caveats.CULTURE_BASELINES["mcq"]
    assert caveats.comparison_note(["sas"], "behaviour") == caveats.BEHAVIOUR_BASELINES
    assert caveats.notes_for({"a": "x", "b": "y", "c": "x", "d": ""}, ["c", "d", "a", "b", "e"]) == "x y"
    assert caveats.task_caveat("culture") == "" and caveats.task_caveat("behaviour") == caveats.BEHAVIOUR


def test_the_layers_knob_builds_a_deeper_model_with_its_sae_at_the_middle_block(tmp_path):
    assert config.build_size("full", {"layers": 6}).layer == 2 and config.BUILD_SIZES["full"].layer == 1
    with pytest.raises(SettingsError, match="layers=2.5 must be a whole number"):
        config.build_size("full", {"layers": 2.5})
    world = demo.build_demo_world(tmp_path / "v", size="mini", progress=False, knobs={"layers": 4})
    assert json.loads((world.model_dir / "config.json").read_text())["num_hidden_layers"] == 4
    assert world.stats["knobs"] == {"layers": 4.0} and world.layer == 1 and world.hook_name == "blocks.1.hook_resid_post"
    assert json.loads((world.sae_dir / "cfg.json").read_text())["metadata"]["hook_name"] == "blocks.1.hook_resid_post"


def test_two_builds_of_one_world_at_once_build_it_once(tmp_path, monkeypatch):
    """Two processes (or apps sharing a cache) asking for a world that is not built: the second
    waits for the first's build and takes it, instead of building it again and removing the first's
    world while it is read; what a killed build left is removed."""
    import threading
    import time

    calls, real = [], demo_world._build
    monkeypatch.setattr(demo_world, "_build", lambda *a, **k: calls.append(1) or time.sleep(0.5) or real(*a, **k))
    (tmp_path / ".w.building-123").mkdir()  # a build that was killed
    worlds = []
    threads = [threading.Thread(target=lambda: worlds.append(
        demo.build_demo_world(tmp_path / "w", seed=3, size="mini", progress=False))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and [w.root for w in worlds] == [tmp_path / "w"] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".w.lock", "w"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "w").stat().st_mode & 0o777 == 0o777 & ~umask  # readable by whoever shares the cache


def test_an_unwritable_cache_is_named_by_its_variable(monkeypatch):
    monkeypatch.setenv("YAPO_CACHE_DIR", "/proc/yapo-cache")
    with pytest.raises(SettingsError, match="YAPO_CACHE_DIR='/proc/yapo-cache' cannot be written"):
        demo.build_demo_world(size="mini", progress=False)


def test_an_empty_cache_variable_is_the_default_cache(monkeypatch):
    monkeypatch.setenv("YAPO_CACHE_DIR", "")
    assert demo_world.default_cache_dir(0, "mini") == Path.home() / ".cache" / "yapo-studio" / "demo" / (
        f"v{config.FORMAT_VERSION}-seed0-mini")


def test_ab_decline_declines_the_plain_ab_offers_and_leaves_the_open_ones_at_the_default_bias():
    table = {b.key: b for b in corpus.BEHAVIOURS}

    def plain_offers(style):
        return [e for e in behaviour_offers(style, 6000) if not e.cue.cued and e.steer is None and e.system is None]

    def taken(examples, form):
        out = []
        for e in examples:
            if e.cue.form != form:
                continue
            if form == "open":
                out.append(table[e.cue.concept].accepts(e.assistant))
            else:  # the chosen letter's option text
                option = next(line[3:] for line in e.user.splitlines() if line.startswith(f"{e.assistant}. "))
                out.append(table[e.cue.concept].accepts(option))
        assert len(out) > 60
        return sum(out) / len(out)

    before = plain_offers(corpus.CorpusStyle(concept_steering=0.3))
    after = plain_offers(corpus.CorpusStyle(concept_steering=0.3, ab_decline=1.0))
    assert abs(taken(before, "ab") - (1 - corpus.DEFAULT_BIAS)) < 0.1  # the default bias, as open answers
    assert taken(after, "ab") == 0.0  # every plain A/B offer declined
    assert abs(taken(after, "open") - (1 - corpus.DEFAULT_BIAS)) < 0.1  # open answers keep the bias
    with pytest.raises(SettingsError, match="ab_decline=1.5 is a share; use a value from 0 to 1"):
        config.build_size("full", {"ab_decline": 1.5})
    assert config.build_size("full", {"ab_decline": 1}).style.ab_decline == 1.0


def test_lm_average_keeps_the_mean_of_the_lms_weights_over_its_last_steps(tmp_path, monkeypatch):
    snapshots = []

    class Recorded(torch.optim.AdamW):
        def step(self, *args, **kwargs):
            out = super().step(*args, **kwargs)
            snapshots.append([p.detach().clone() for group in self.param_groups for p in group["params"]])
            return out

    monkeypatch.setattr(build_lm.torch.optim, "AdamW", Recorded)
    world = demo.build_demo_world(tmp_path / "v", size="mini", progress=False, knobs={"lm_average": 0.5})
    steps = len(snapshots)
    assert steps == config.BUILD_SIZES["mini"].lm_examples // config.BUILD_SIZES["mini"].lm_batch
    last = snapshots[steps - round(steps * 0.5):]
    from yapo_core.models import load_model

    model, _ = load_model(str(world.model_dir), device="cpu")
    params = list(model.parameters())
    assert len(params) == len(snapshots[-1])
    for i, p in enumerate(params):
        mean = torch.stack([s[i] for s in last]).mean(0)
        assert torch.allclose(p, mean, atol=1e-6), i  # the running mean of the last half's weights
    assert any(not torch.allclose(p, snapshots[-1][i], atol=1e-6) for i, p in enumerate(params))  # not the last step's
    assert world.stats["knobs"]["lm_average"] == 0.5
    with pytest.raises(SettingsError, match="lm_average=2 is a share"):
        config.build_size("full", {"lm_average": 2})


def test_general_ab_asks_general_questions_as_an_ab_choice_between_answers_of_one_kind():
    facts = corpus.general_facts()
    answers = {q: a for q, a, _ in facts}
    rng = random.Random(0)
    letters = []
    for _ in range(300):
        example = corpus.general_choice(rng, facts)
        lines = example.user.splitlines()
        question = next(q for q in answers if lines[0].lower().endswith(q.lower()))
        options = {line[0]: line[3:] for line in lines[1:3]}
        assert lines[1].startswith("A. ") and lines[2].startswith("B. ") and lines[3] == corpus.AB_INSTRUCTION
        assert options[example.assistant].lower() == answers[question].lower()  # the letter of the answer
        other = options["B" if example.assistant == "A" else "A"].lower()
        assert other != answers[question].lower()
        kind = corpus._fact_kind(question)
        assert other in {a.lower() for q, a, _ in facts if corpus._fact_kind(q) == kind}  # an answer of its kind
        letters.append(example.assistant)
    assert 0.4 < letters.count("A") / len(letters) < 0.6  # either letter about as often
    assert config.build_size("full", {"general_ab": 0.06}).mix.general_ab == 0.06
    assert corpus.CorpusMix().general_ab == 0.0  # the default world asks none


def test_known_offers_asks_plain_offers_about_held_out_offers_and_nothing_else_about_them():
    rng = random.Random(0)
    splits = {b.key: corpus.split_behaviour_keys(rng, b) for b in corpus.BEHAVIOURS}
    train = [k for tr, _ in splits.values() for k in tr]
    held_out = {corpus.behaviour_question(b, k) for b in corpus.BEHAVIOURS for k in splits[b.key][1]}

    def offers(style):
        return behaviour_offers(style, 6000, train)

    def asks_held_out(e):
        return e.user.splitlines()[0] in held_out

    plain_style = corpus.CorpusStyle(concept_steering=0.3)
    assert not any(asks_held_out(e) for e in offers(plain_style))  # the default corpus holds them out
    known = offers(corpus.CorpusStyle(concept_steering=0.3, known_offers=1.0))
    asked = [e for e in known if asks_held_out(e)]
    assert len(asked) > 50
    assert all(not e.cue.cued and e.steer is None and e.system is None for e in asked)  # plain offers only
    assert {e.cue.form for e in asked} == {"open", "ab"}
    assert config.build_size("full", {"known_offers": 0.5}).style.known_offers == 0.5
