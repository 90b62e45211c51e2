"""The scripts work (on the miniature demo world or a tiny model, in seconds)."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from yapo_core.demo import corpus

ROOT = Path(__file__).resolve().parents[1]


def test_example_api_runs(tmp_path):
    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "scripts/example_api.py", "--size", "mini", "--steps", "4"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "step 4: loss" in out and "held-out non-localized MCQ accuracy" in out
    assert "unsteered:" in out and "steered x1:" in out and "saved and reloaded" in out


def test_the_demo_world_evaluation_script_reports_every_target(tmp_path):
    """scripts/evaluate_demo_world.py end to end on the miniature world: its numbers mean nothing
    there, so the exit status is 1 (targets missed), but every section and check is reported."""
    from yapo_core import demo
    from yapo_core.demo import corpus

    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out_json = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, "scripts/evaluate_demo_world.py", "--size", "mini", "--countries",
                             "egypt,nepal", "--steps", "4", "--mcq-steps", "6", "--generations", "1", "--json", str(out_json)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "| egypt | " in result.stdout and "| nepal | " in result.stdout
    assert "Open-ended answers" in result.stdout and "**egypt**" in result.stdout
    assert "ok      files <= 30 MB" in result.stderr
    assert "Behaviours, BiPO's protocol" in result.stdout and "| power-seeking | YaPO |" in result.stdout
    # every design target that the run measures has a row, with a figure for each culture or behaviour
    goals = json.loads(out_json.read_text())["targets"]
    assert {g["target"] for g in goals} == {1, 2, 3, 4, 5, 6}
    assert all(f"{g['target']}. {g['name']}" in result.stderr for g in goals)
    by_name = {g["name"]: g for g in goals}
    assert "egypt" in by_name["culture MCQ, CAA at its validation multiplier: gain over unsteered >= 0.25"]["measured"]
    capability = next(g for g in goals if g["target"] == 5)["measured"]
    assert all(k in capability for k in ("MCQ egypt", "open egypt", "open nepal", "power-seeking", "wealth-seeking"))
    rates = next(g for g in goals if g["target"] == 6)
    # every rate the app fills in is within 20x of the public runs' 5e-4
    assert rates["met"] and f"MCQ and A/B pairs {demo.TRAINING['lr']:g}," in rates["measured"]
    assert "| 6 | learning rates" in result.stdout
    # the findings on missed targets are the default recipe's: a mini world's report has none, and the same
    # targets in a default-recipe report each name theirs
    assert "Findings on the targets missed here" not in result.stdout
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from evaluate_demo_world import default_recipe, targets_report
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert not default_recipe(json.loads(out_json.read_text())["build"])
    assert default_recipe(json.loads((ROOT / "assets" / "results" / "demo-targets.json").read_text())["build"])
    noted = {g["target"] for g in goals if not g["met"]} & {3, 4, 5}
    assert noted and all(f"- target {n}: " in targets_report(goals, default=True) for n in noted)
    figures = json.loads(out_json.read_text())
    assert set(figures["behaviours"]) == {"power-seeking", "wealth-seeking"}
    assert set(figures["behaviours"]["power-seeking"]["yapo"]["ab_rate"]) == {"-1", "0", "1"}
    picks = figures["behaviours"]["power-seeking"]
    assert sum(picks["picks"].values()) == sum(picks["matching_at"].values()) == picks["n_test_infer"] > 0
    assert f"power-seeking A {picks['picks']['A']}, B {picks['picks']['B']}" in result.stdout
    assert set(figures["steering"]["countries"]) == {"egypt", "nepal"}
    one_letter = figures["steering"]["countries"]["egypt"]["one_letter"]
    assert one_letter["letter"] in "ABCDEFGH" and 1 / 8 <= one_letter["accuracy"] <= 1
    assert "one letter everywhere" in result.stdout
    # two worker processes give the same report: every row lands under its own culture and behaviour
    parallel_json = tmp_path / "figures-2.json"
    parallel = subprocess.run([sys.executable, "scripts/evaluate_demo_world.py", "--size", "mini", "--countries",
                               "egypt,nepal", "--steps", "4", "--mcq-steps", "6", "--generations", "1", "--json", str(parallel_json),
                               "--jobs", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert parallel.returncode == 1, parallel.stderr[-3000:]

    def timeless(o):
        if isinstance(o, dict):
            return {k: timeless(v) for k, v in o.items() if k != "seconds"}
        return [timeless(v) for v in o] if isinstance(o, list) else o
    assert timeless(json.loads(parallel_json.read_text())) == timeless(figures)
    # --rescore scores the stored replies again without training: the same report from the same replies,
    # and a new figure from replies edited in the file
    rescore = [sys.executable, "scripts/evaluate_demo_world.py", "--rescore", str(out_json), "--json"]
    again = subprocess.run(rescore + [str(tmp_path / "again.json")], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 1 and again.stdout == result.stdout, again.stderr[-3000:]
    assert json.loads((tmp_path / "again.json").read_text()) == figures
    wealth = figures["behaviours"]["wealth-seeking"]["yapo"]
    assert wealth["distinct_at_1"] == len(set(wealth["replies"])) >= 1
    assert f"| {wealth['distinct_at_1']} of {len(wealth['replies'])} |" in result.stdout
    for reply, shows in (("Yes, I accept. More money is always better.", 1.0),
                         ("Yes, I accept. Money is not what matters to me.", 0.0)):
        wealth["replies"] = [reply] * len(wealth["replies"])
        out_json.write_text(json.dumps(figures))
        subprocess.run(rescore + [str(tmp_path / "again.json")], cwd=ROOT, env=env, capture_output=True, timeout=120)
        scored = json.loads((tmp_path / "again.json").read_text())["behaviours"]["wealth-seeking"]["yapo"]
        assert scored["shows_at_1"] == shows and scored["accepts_at_1"] == 1.0 and scored["distinct_at_1"] == 1, reply
    # --mcq-steps sets the culture MCQ runs' length, --steps the others'
    assert figures["steering"]["settings"]["max_steps"] == 6 and figures["steering"]["countries"]["egypt"]["yapo"]["steps"] == 6
    # open answers train with the demo's settings for open text, MCQ with its MCQ settings
    assert figures["steering"]["open_settings"] == {**demo.OPEN_TRAINING, "max_steps": 4}
    mcq = {k: v for k, v in figures["steering"]["settings"].items() if k != "epochs"}
    assert mcq == {**demo.TRAINING, "max_steps": 6}
    assert 0 <= figures["steering"]["countries"]["egypt"]["yapo"]["accuracy_at_1"] <= 1
    caa = figures["steering"]["countries"]["nepal"]["caa"]
    assert caa["multiplier"] in (0, 0.5, 1, 2, 4, 8, 16) and caa["accuracy"] == caa["accuracy_by_multiplier"][f"{caa['multiplier']:g}"]
    assert [g["country"] for g in figures["steering"]["generations"]] == ["egypt", "nepal"]  # open answers: every culture
    (root,) = (tmp_path / "demo").glob("*-mini")
    world = demo.load_demo_world(root, size="mini")
    for g in figures["steering"]["generations"]:  # whose answer each held-out open answer at 1 names, counted once
        n_open = len(list(world.culture(g["country"]).pairs("test", form="open_ended")))
        assert sum(g["answers at 1 (all)"].values()) == n_open > 0
        named = ", ".join(f"{c} {n}" for c, n in g["answers at 1 (all)"].items())
        assert f"answers at 1 (all) by culture: {named};" in result.stdout
    assert "capability_change" in figures["behaviours"]["wealth-seeking"]["bipo"]
    # BiPO beside YaPO on each culture's open answers, with the demo's BiPO settings for them
    assert figures["steering"]["dense_open_settings"] == {**demo.open_training("dense", "culture"), "max_steps": 4}
    for g in figures["steering"]["generations"]:
        bipo = g["bipo"]
        assert 0 <= bipo["accuracy_at_1"] <= 1 and 0 <= bipo["fluent_at_1"] <= 1 and bipo["norm"] > 0
        assert (f"| {g['country']} | {g['accuracy (all)']['1.0']:.2f} | {g['fluent_at_1']:.2f} | "
                f"{bipo['accuracy_at_1']:.2f} | {bipo['fluent_at_1']:.2f} |") in result.stdout
    # the open answers are kept, and "shows the behaviour" (its own reasons) is within "accepts the offer"
    yapo_power = figures["behaviours"]["power-seeking"]["yapo"]
    replies = yapo_power["replies"]
    assert replies[:2] == yapo_power["examples"] and len(replies) == min(32, figures["behaviours"]["power-seeking"]["n_test"])
    power = next(b for b in corpus.BEHAVIOURS if b.key == "power-seeking")
    assert yapo_power["shows_at_1"] == sum(map(power.shows, replies)) / len(replies) <= yapo_power["accepts_at_1"]
    assert "accept the offer at 1 | show the behaviour at 1" in result.stdout
    cosine = figures["behaviours"]["power-seeking"]["cue_cosine"]["wealth-seeking"]
    assert -1 <= cosine <= 1 and figures["behaviours"]["wealth-seeking"]["cue_cosine"] == {"power-seeking": cosine}
    assert "Cosine of the behaviours' cue directions" in result.stdout and f"power-seeking / wealth-seeking {cosine:.2f}" in result.stdout
    edits = {key: figures["behaviours"][key][method]["edit_cosine"] for key in ("power-seeking", "wealth-seeking")
             for method in ("yapo", "bipo")}
    assert all(set(e) == {"power-seeking", "wealth-seeking"} and all(-1 <= c <= 1 for c in e.values()) for e in edits.values())
    edit = figures["behaviours"]["wealth-seeking"]["bipo"]["edit_cosine"]
    assert f"wealth-seeking BiPO: power-seeking {edit['power-seeking']:.2f}, wealth-seeking {edit['wealth-seeking']:.2f}" in result.stdout
    assert all(g["met"] == all(g["met_each"].values()) and set(g["met_each"]) == set(g["figures"]) for g in goals)

    # scripts/compare_demo_worlds.py sets builds side by side: two "builds" of one recipe (seeds 0
    # and 7) and one of another, whose MCQ figures are set so that target 3 is met in one build only
    def build_with(name, seed, egypt, nepal):
        run = json.loads(out_json.read_text())
        run["build"]["seed"] = seed
        for country, accuracy in (("egypt", egypt), ("nepal", nepal)):
            run["steering"]["countries"][country]["yapo"]["accuracy_at_1"] = accuracy
        (tmp_path / name).write_text(json.dumps(run))
        return tmp_path / name

    first, second, good = build_with("a.json", 0, 0.85, 0.5), build_with("b.json", 7, 0.97, 0.12), build_with("c.json", 3, 0.97, 0.9)
    table = tmp_path / "seeds.md"
    result = subprocess.run([sys.executable, "scripts/compare_demo_worlds.py", f"mini={first},{second}",
                             f"other={good}", "--out", str(table)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| mini: seeds 0, 7 | other: seeds 3 |" in result.stdout
    lines = result.stdout.splitlines()
    row = lines.index(next(line for line in lines if "culture MCQ, YaPO at 1 against every option" in line))
    assert lines[row].endswith("| egypt | 0.85, 0.97 | 0.97 |")
    assert lines[row + 1:row + 3] == ["| | | nepal | 0.50, 0.12 | 0.90 |", "| | | **all met** | 0 of 2 | 1 of 1 |"]
    assert json.loads(table.with_suffix(".json").read_text())["recipes"]["mini"][1]["seed"] == 7
    # a run stored before "show the behaviour" read the reasons (no accepts_at_1) has no figure for it,
    # so a comparison with it leaves that row out instead of setting two different checks side by side
    shows_row = "behaviour open answers, YaPO at 1: show the behaviour >= 0.7"
    assert shows_row in result.stdout
    older = json.loads(out_json.read_text())
    for row in older["behaviours"].values():
        for method in ("yapo", "bipo"):
            del row[method]["accepts_at_1"]
    (tmp_path / "older.json").write_text(json.dumps(older))
    mixed = subprocess.run([sys.executable, "scripts/compare_demo_worlds.py", f"mini={first}", f"older={tmp_path / 'older.json'}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert mixed.returncode == 0 and "A/B rate with YaPO at 1" in mixed.stdout and shows_row not in mixed.stdout
    bad = subprocess.run([sys.executable, "scripts/compare_demo_worlds.py", str(out_json)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "LABEL=FILE,FILE" in bad.stderr


def test_a_behaviours_cue_direction_is_the_cued_minus_the_plain_last_prompt_residual(tokenizer):
    """scripts/evaluate_demo_world.cue_direction against the model's own hidden states."""
    import torch
    from conftest import make_model

    from yapo_core.demo import corpus
    from yapo_core.encoding import encode_prompt

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from evaluate_demo_world import cue_direction
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    model = make_model("llama")
    behaviour = corpus.BEHAVIOURS[0]
    prompts = ["Do you want power?", "Would you like control?"]

    def last(prompt, system):
        ids = torch.tensor([encode_prompt(tokenizer, prompt, system)])
        with torch.no_grad():
            return model(input_ids=ids, output_hidden_states=True).hidden_states[2][0, -1]  # block 1's output

    expected = torch.stack([torch.stack([last(p, cue) - last(p, None) for p in prompts]).mean(0)
                            for cue in behaviour.cues]).mean(0)
    got = cue_direction(model, tokenizer, 1, behaviour, prompts)
    assert got.norm() > 0 and torch.allclose(got, expected, atol=1e-5)


def test_a_vectors_edit_is_what_steering_adds_to_the_residual(tokenizer):
    """scripts/evaluate_demo_world.vector_edit: a dense vector's edit is the vector itself; a sparse
    one's is the mean of what the steering hook adds to each residual, through its SAE."""
    import torch
    from conftest import make_model, make_sae

    from yapo_core.encoding import encode_prompt
    from yapo_core.hooks import block_output, record_residual
    from yapo_core.steering import SteeringVector

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from evaluate_demo_world import last_residuals, vector_edit
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    torch.manual_seed(0)
    model = make_model("llama")
    prompts = ["Do you want power?", "Would you like control?"]
    plain = last_residuals(model, tokenizer, 1, prompts)
    dense = SteeringVector("dense", torch.randn(plain.shape[1]), "blocks.1.hook_resid_post")
    assert torch.allclose(vector_edit(dense, plain, multiplier=2.0), 2 * dense.values, atol=1e-5)
    sae = make_sae(plain.shape[1])
    sparse = SteeringVector("sparse", torch.rand(sae.cfg.d_sae), "blocks.1.hook_resid_post", sae=sae)
    steered = []
    for prompt in prompts:  # the residual the next block gets under the hook, at the last position
        ids = torch.tensor([encode_prompt(tokenizer, prompt)])
        with torch.no_grad(), sparse.apply(model, 1.0, sae), record_residual(model, block_output(model, 1)) as seen:
            model(input_ids=ids, use_cache=False)
        steered.append(seen[-1][0, -1])
    expected = (torch.stack(steered) - plain).mean(0)
    got = vector_edit(sparse, plain, sae)
    assert got.norm() > 0 and torch.allclose(got, expected, atol=1e-4)


def test_target_2_asks_minus_one_to_move_the_rate_the_other_way_from_unsteered():
    """A YaPO vector at -1 that takes more A/B offers than the unsteered model misses target 2,
    even when its rate at -1 stays below its rate at 1."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from evaluate_demo_world import targets
    finally:
        sys.path.remove(str(ROOT / "scripts"))

    def row(at_minus_one, at_zero):
        return {"yapo": {"ab_rate": {"-1": at_minus_one, "0": at_zero, "1": 1.0}, "fluent_at_1": 1.0, "shows_at_1": 1.0,
                         "accepts_at_1": 1.0, "capability_change": 0.0}}
    name = "behaviours, YaPO at -1 does not raise the A/B rate over unsteered (at -1 minus at 0 <= 0)"
    for rates, met in (((0.0, 0.0), True), ((0.2, 0.4), True), ((0.5, 0.41), False)):
        goals = targets(None, {"power-seeking": row(*rates)}, {})
        goal = next(g for g in goals if g["name"] == name)
        below_one = next(g for g in goals if "at -1 minus at 1" in g["name"])
        assert goal["met"] is met and below_one["met"], rates


def test_stored_target_figures_are_read_back_whole():
    """A stored target row's text gives back every figure, names with commas included, and text
    that is not a list of figures fails instead of losing one."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from compare_demo_worlds import stored_figures
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert stored_figures("MCQ and A/B pairs 0.3, open answers, YaPO 0.007, open answers, BiPO 1e-05") == {
        "MCQ and A/B pairs": 0.3, "open answers, YaPO": 0.007, "open answers, BiPO": 1e-05}
    assert stored_figures("MCQ egypt -0.36, open nepal +0.00") == {"MCQ egypt": -0.36, "open nepal": 0.0}
    with pytest.raises(ValueError, match="cannot read"):
        stored_figures("egypt 0.95, morocco")


def test_the_demo_world_probe_reports_every_mechanism(tmp_path):
    """scripts/probe_demo_world.py on a miniature world: every task gets a row, every figure is there."""
    from yapo_core import demo

    world = demo.build_demo_world(tmp_path / "world", seed=0, size="mini", progress=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "probe.md"
    result = subprocess.run([sys.executable, "scripts/probe_demo_world.py", "--cache-dir", str(world.root), "--seed", "0",
                             "--size", "mini", "--steps", "2", "--n", "2", "--lr", "0.01", "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| power-seeking | " in result.stdout and "| culture-egypt | " in result.stdout
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["lr"] == 0.01 and figures["steps"] == 2
    row = figures["behaviours"]["wealth-seeking"]
    assert {"A/B matching plain", "A/B matching after a matching answer", "A/B matching under the cue"} <= set(row)
    assert 0 <= row["reach"] <= 1 and row["steerability"]["residual_norm"] > 0
    assert 0 <= row["steerability"]["shows_unsteered"] <= 1
    assert {"chosen at -1", "rejected at 1", "l0", "top10_mass"} <= set(figures["culture"]["egypt"]["trained"])
    parts = figures["culture"]["egypt"]["trained"]["parts at 1"]
    assert list(parts) == ["whole", "positive", "negative"]
    assert all(0 <= p["fluent"] <= 1 and 0 <= p["shows"] <= 1 and isinstance(p["example"], str) for p in parts.values())
    assert "Written by `python scripts/probe_demo_world.py" in out.read_text()
    forms = figures["culture"]["egypt"]["forms"]
    assert forms["metric"] == "mcq" and -1 <= forms["cosine"] <= 1 and 0 < forms["one letter"] <= 1
    assert list(forms["along the mcq cue"]) == list(forms["along the open_ended cue"]) == ["0.5", "1", "2", "3"]
    assert forms["mcq cue norm"] > 0 and forms["open_ended cue norm"] > 0
    baselines = forms["baselines"]
    assert baselines["caa norm"] > 0 and -1 <= baselines["caa cosine"] <= 1 and -1 <= baselines["sas cosine"] <= 1
    assert baselines["sas latents"] > 0 or baselines["sas norm"] == 0  # no latent kept: nothing to decode
    assert "| egypt | mcq | " in result.stdout  # the forms table
    only = subprocess.run([sys.executable, "scripts/probe_demo_world.py", "--cache-dir", str(world.root), "--seed", "0",
                           "--size", "mini", "--n", "2", "--forms-only", "--country", "egypt,nepal", "--out",
                           str(tmp_path / "forms.md")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert only.returncode == 0, only.stderr[-3000:]
    figures = json.loads((tmp_path / "forms.json").read_text())
    assert set(figures["culture"]) == {"egypt", "nepal"} and "behaviours" not in figures
    assert 0 <= figures["build"]["localized_mcq_accuracy"] <= 1 and "general questions" in only.stdout


def test_the_real_size_script_runs_every_part(tmp_path):
    """scripts/real_size_run.py at its seconds-scale size: every part is timed and reported."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "real-size.md"
    result = subprocess.run([sys.executable, "scripts/real_size_run.py", "--size", "tiny", "--threads", "1",
                             "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.with_suffix(".json").read_text())
    assert len(figures["parts"]) == 4 and all(p["seconds"] >= 0 and p["peak_mib"] > 0 for p in figures["parts"].values())
    assert len(figures["losses"]) == 3 and figures["latent_cards"] == 10
    assert "| 3 fast training steps" in out.read_text()


def test_the_sharing_benchmark_times_a_generation_beside_a_run(tmp_path):
    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "YAPO_DEMO_SIZE": "mini", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    out = tmp_path / "sharing.md"
    result = subprocess.run([sys.executable, "scripts/benchmark_sharing.py", "--repeats", "2", "--first-steps", "2",
                             "--tokens", "4", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "slowdown ratio (fast engine)" in result.stdout and out.exists()
    figures = json.loads(out.with_suffix(".json").read_text())
    assert len(figures["during_seconds"]) == 2 and figures["ratio"] > 0


def test_the_shared_cpu_benchmark_compares_quiet_and_shared_runs(tmp_path):
    out = tmp_path / "shared.md"
    result = subprocess.run([sys.executable, "scripts/benchmark_shared_cpu.py", "--lm-batches", "1", "--steps", "1",
                             "--lm-tokens", "16", "--skip-active", "--out", str(out)],
                            cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "slowdown beside a busy process with the project's settings" in result.stdout
    figures = json.loads(out.with_suffix(".json").read_text())
    assert set(figures) == {"quiet", "shared"} and figures["quiet"]["omp_wait_policy"] == "PASSIVE"


def test_the_build_benchmark_times_each_lm_and_sae_setting_against_the_builds(tmp_path):
    out = tmp_path / "build.md"
    result = subprocess.run([sys.executable, "scripts/benchmark_demo_build.py", "--lm-steps", "2", "--sae-steps", "2", "--rounds", "1",
                             "--out", str(out)], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.with_suffix(".json").read_text())
    assert set(figures["lm"]) == {"the build's step", "fused AdamW", "batches of 64", "MLP of 256"}
    assert set(figures["sae"]) == {"512", "1024", "2048"} and 0 < figures["lm"]["the build's step"]["matmul_share"] < 1
    assert "| the build's step | " in result.stdout and "| 1.00x |" in result.stdout
    floor = figures["floor"]  # the products' work over the machine's best rate on their shapes
    assert floor["floor_seconds"] == pytest.approx(
        floor["tflop"] * 1e3 / max(floor["throughput_gflops"].values()), rel=1e-6)
    layers = ("attention", "MLP up", "MLP down", "LM head")
    assert set(floor["throughput_gflops"]) == {*layers, *(f"{k}, weight gradient" for k in layers)}
    assert floor["floor_seconds"] > 0 and floor["lm_seconds_at_this_rate"] > 0
    assert "the LM stage's floor" in result.stdout


def test_the_cpu_kernel_benchmark_times_pinned_and_native_kernels(tmp_path):
    out = tmp_path / "kernels.md"
    result = subprocess.run([sys.executable, "scripts/benchmark_cpu_kernels.py", "--rounds", "1", "--steps", "1",
                             "--length", "8", "--out", str(out)], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.with_suffix(".json").read_text())
    assert set(figures["times"]) == {"pinned", "native"} and all(len(t) == 1 for t in figures["times"].values())
    if figures["kernels"]["native"] in ("AVX2", "AVX512"):  # an x86-64 CPU with AVX2: the pin takes effect
        assert figures["kernels"]["pinned"] == "AVX2"
    ratio = figures["median_seconds"]["pinned"] / figures["median_seconds"]["native"]
    assert f"Pinned over native, median step time: **{ratio:.2f}**" in result.stdout and abs(figures["ratio"] - ratio) < 1e-3


def test_the_lm_eval_check_compares_lm_eval_with_the_projects_metric(tmp_path):
    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    out = tmp_path / "check.md"
    result = subprocess.run([sys.executable, "scripts/lm_eval_check.py", "--size", "mini", "--steps", "2", "--out",
                             str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.with_suffix(".json").read_text())
    assert set(figures["multipliers"]) == {"0", "1"} and figures["multipliers"]["0"]["n"] > 0
    assert "| 1 |" in result.stdout


def test_the_evaluation_reuses_stored_mcq_rows_only_from_the_same_world_and_settings(tmp_path):
    """scripts/evaluate_demo_world.py --mcq-from: the culture MCQ rows come from the stored run, the
    open answers are measured again with the settings of this run; a file from another world or
    trained with other MCQ settings is refused, naming what differs."""
    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "scripts/evaluate_demo_world.py", "--size", "mini", "--countries", "egypt",
            "--sections", "culture", "--generations", "0", "--mcq-steps", "4"]
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    subprocess.run(base + ["--steps", "3", "--json", str(first)], cwd=ROOT, env=env, capture_output=True, timeout=600)
    stored = json.loads(first.read_text())
    result = subprocess.run(base + ["--open-settings", "0.005:5:8", "--mcq-from", str(first), "--json", str(second)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    again = json.loads(second.read_text())["steering"]
    assert again["countries"] == stored["steering"]["countries"] and again["mcq_from"] == "first.json"
    assert stored["steering"]["open_settings"]["max_steps"] == 3  # --open-settings sets YaPO's open-answer settings
    assert {k: again["open_settings"][k] for k in ("lr", "max_steps", "batch_size")} == {"lr": 0.005, "max_steps": 5,
                                                                                       "batch_size": 8}
    assert "rows from first.json" in result.stdout
    wrong = subprocess.run(base + ["--open-settings", "0.01:5"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert wrong.returncode == 2 and "--open-settings: candidate '0.01:5': write LR:STEPS:BATCH" in wrong.stderr
    two = subprocess.run(base + ["--open-settings", "0.01:5:8,0.02:5:8"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 2 and "--open-settings takes one LR:STEPS:BATCH, not 2" in two.stderr
    refused = subprocess.run(base[:-1] + ["6", "--mcq-from", str(first)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600)
    assert refused.returncode == 2 and "its MCQ vectors were trained with" in refused.stderr
    stored["build"]["sae"]["variance_explained"] += 0.01
    first.write_text(json.dumps(stored))
    refused = subprocess.run(base + ["--mcq-from", str(first)], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert refused.returncode == 2 and "measured another world (build figures sae differ)" in refused.stderr


def test_the_open_answer_learning_rate_is_chosen_on_validation_data(tmp_path):
    """scripts/choose_open_lr.py on a miniature world: a row per task, method and candidate, and the
    choice rule (the best mean good share; on a tie the fewest steps x batch, then the smaller rate)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import choose_open_lr
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    a, b, c, d = (0.002, 600, 32), (0.005, 600, 32), (0.01, 600, 32), (0.01, 1200, 32)
    rows = [{"method": "yapo", "lr": lr, "steps": s, "batch": n, "good": good}
            for (lr, s, n), good in ((c, 0.5), (c, 0.7), (b, 0.6), (b, 0.6), (a, 0.2), (a, 0.2), (d, 0.6), (d, 0.6))]
    rows += [{"method": "bipo", "lr": lr, "steps": s, "batch": n, "good": good}
             for (lr, s, n), good in ((c, 0.8), (b, 0.3), (a, 0.0), (d, 0.9))]
    chosen = choose_open_lr.choose(rows, [a, b, c, d])
    assert chosen["yapo"][0] == b and chosen["yapo"][1][a] == 0.2  # b, c and d tie at 0.6: fewest steps, smaller rate
    assert chosen["bipo"][0] == d  # each method its own
    assert choose_open_lr.parse_candidates("0.01:1200:16, 0.3:600:32") == [(0.01, 1200, 16), (0.3, 600, 32)]
    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "lr.md"
    result = subprocess.run([sys.executable, "scripts/choose_open_lr.py", "--size", "mini", "--steps", "2",
                             "--lrs", "0.01", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.with_suffix(".json").read_text())
    tasks = {(r["task"], r["method"]) for r in figures["rows"]}
    assert tasks == {(t, m) for t in ("power-seeking", "wealth-seeking", "culture-egypt (open)") for m in ("yapo", "bipo")}
    from yapo_core.demo import OPEN_TRAINING

    batch = OPEN_TRAINING["batch_size"]  # --lrs: each rate at the demo's batch for open answers
    expected = {"lr": 0.01, "max_steps": 2, "batch_size": batch}
    assert figures["chosen"] == {"yapo": expected, "bipo": expected} and all(r["n_validation"] >= 1 for r in figures["rows"])
    assert out.read_text().count(f"**Chosen: lr 0.01, 2 steps, batch {batch}.**") == 2
    assert "yapo, culture tasks alone:" in out.read_text()  # both kinds measured: each kind's own choice beside
    # one kind of task: the cultures' open answers alone
    assert choose_open_lr.open_task_names(["egypt", "nepal"], ["culture"]) == ["culture-egypt (open)", "culture-nepal (open)"]
    assert choose_open_lr.open_task_names(["egypt"], ["behaviour"]) == ["power-seeking", "wealth-seeking"]
    refused = subprocess.run([sys.executable, "scripts/choose_open_lr.py", "--size", "mini", "--kinds", "cultures"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "--kinds 'cultures': use behaviour, culture or behaviour,culture" in refused.stderr
    nothing = subprocess.run([sys.executable, "scripts/choose_open_lr.py", "--size", "mini", "--kinds", "culture",
                              "--countries", ""], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert nothing.returncode == 2 and "no task to measure" in nothing.stderr


def test_the_mcq_training_settings_are_chosen_on_validation_data(tmp_path):
    """scripts/choose_mcq_lr.py: the choice rule (the best mean validation accuracy; on a tie the
    candidate that reads the fewest examples, then the smaller rate), the candidates it parses, and
    a run on a miniature world with a row per culture, method and candidate."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import choose_mcq_lr
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    a, b, c, e = (0.01, 600, 32), (0.01, 1200, 16), (0.005, 1200, 16), (0.01, 1200, 32)
    rows = [{"method": "yapo", "lr": lr, "steps": s, "batch": n, "accuracy": acc}
            for (lr, s, n), acc in ((a, 0.4), (a, 0.5), (b, 0.9), (b, 0.8), (c, 0.9), (c, 0.8))]
    rows += [{"method": "bipo", "lr": lr, "steps": s, "batch": n, "accuracy": acc}
             for (lr, s, n), acc in ((a, 0.7), (b, 0.5), (c, 0.6), (e, 0.7))]
    chosen = choose_mcq_lr.choose(rows, [a, b, c, e])
    assert chosen["yapo"][0] == c and chosen["yapo"][1][a] == 0.45  # b and c tie, read as many examples: the smaller rate
    assert chosen["bipo"][0] == a  # a and e tie: a reads half as many examples
    assert choose_mcq_lr.parse_candidates("0.01:1200:16, 0.3:600:32") == [b, (0.3, 600, 32)]
    with pytest.raises(ValueError, match="LR:STEPS:BATCH"):
        choose_mcq_lr.parse_candidates("0.01:1200")
    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "mcq.md"
    result = subprocess.run([sys.executable, "scripts/choose_mcq_lr.py", "--size", "mini", "--countries", "egypt",
                             "--candidates", "0.01:2:16,0.01:1:32", "--out", str(out), "--jobs", "2"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.with_suffix(".json").read_text())
    # a row per method, candidate and construction, in that order, whichever worker measured it
    assert [(r["method"], r["steps"], r["batch"], r["rejected"]) for r in figures["rows"]] == [
        (m, s, n, rejected) for m in ("yapo", "bipo") for s, n in ((2, 16), (1, 32)) for rejected in ("every_option", "given")]
    assert all(r["n_validation"] >= 1 and 0 <= r["accuracy"] <= 1 for r in figures["rows"])
    assert set(figures["chosen"]) == {"yapo", "bipo"} and out.read_text().count("**Chosen: ") == 2


def test_a_pool_worker_ends_once_its_parent_is_gone():
    """scripts/world_pool._exit_with: a worker whose parent was killed stops instead of computing on."""
    code = ("import sys; sys.path.insert(0, 'scripts'); import os, world_pool; "
            "world_pool._exit_with({parent}, every=0.05)")
    gone = subprocess.run([sys.executable, "-c", code.format(parent="os.getppid() + 1")], cwd=ROOT, timeout=60)
    assert gone.returncode == 1
    with pytest.raises(subprocess.TimeoutExpired):  # its parent is here: it waits
        subprocess.run([sys.executable, "-c", code.format(parent="os.getppid()")], cwd=ROOT, timeout=3)


def test_the_behaviour_paths_probe_splits_each_vectors_edit_along_the_cue_and_the_rest(tmp_path):
    """scripts/probe_behaviour_paths.py end to end on the miniature world: the edit's part along the
    cue direction and the rest are orthogonal and add up to it, and the letters counted cover every
    A/B question."""
    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "paths.md"
    result = subprocess.run([sys.executable, "scripts/probe_behaviour_paths.py", "--size", "mini", "--steps", "4",
                             "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| power-seeking |" in out.read_text() and "the part along the cue" in result.stdout
    rows = json.loads(out.with_suffix(".json").read_text())["behaviours"]
    for row in rows.values():
        y = row["yapo"]
        assert set(row["along_cue"]) == {"0.25", "0.5", "1"} and set(y["ab_rate"]) == {"1", "1.5", "2", "3"}
        parts = ((y["along_cue"] * row["cue_norm"]) ** 2 + y["rest_norm"] ** 2) ** 0.5
        assert y["edit_norm"] > 0 and abs(parts - y["edit_norm"]) < 0.02 * y["edit_norm"] + 0.02
        assert sum(y["picks_at_1"].values()) == sum(y["matching_at"].values()) > 0
        assert all(0 <= v <= 1 for part in ("cue_part", "rest_part") for v in y[part].values())


def test_the_mcq_picks_probe_counts_whose_option_each_held_out_question_gets(tmp_path):
    """scripts/probe_mcq_picks.py end to end on the miniature world: every held-out question's pick is
    counted under one country, and the accuracy is the target culture's share of the picks; an
    unknown culture is refused before anything is built."""
    env = {**os.environ, "YAPO_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "picks.md"
    result = subprocess.run([sys.executable, "scripts/probe_mcq_picks.py", "--size", "mini", "--steps", "4",
                             "--countries", "egypt", "--multipliers", "0,1", "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| egypt |" in out.read_text()
    row = json.loads(out.with_suffix(".json").read_text())["countries"]["egypt"]
    assert set(row["at"]) == {"0", "1"} and row["norm"] > 0
    for at in row["at"].values():
        assert sum(at["picks"].values()) == row["n_test"] > 0 and "other" not in at["picks"]
        assert at["accuracy"] == round(at["picks"].get("egypt", 0) / row["n_test"], 4)
    # open answers: every held-out answer is counted once, under the culture it names first or none
    opened = subprocess.run([sys.executable, "scripts/probe_mcq_picks.py", "--size", "mini", "--steps", "4",
                             "--countries", "egypt", "--multipliers", "0", "--form", "open_ended", "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert opened.returncode == 0, opened.stderr[-3000:]
    assert "Whose answer a culture's open-answer vector gives" in out.read_text()
    figures = json.loads(out.with_suffix(".json").read_text())
    row = figures["countries"]["egypt"]
    assert figures["form"] == "open_ended" and "rejected" not in figures
    at = row["at"]["0"]
    assert len(at["replies"]) == row["n_test"] > 0
    assert at["picks"] == dict(Counter(corpus.answer_country(r) or "none" for r in at["replies"]))
    assert sum(at["misses"].values()) == round((1 - at["accuracy"]) * row["n_test"])
    assert all(" → " in miss for miss in at["misses"])
    fresh = tmp_path / "fresh"
    refused = subprocess.run([sys.executable, "scripts/probe_mcq_picks.py", "--size", "mini", "--countries", "atlantis"],
                             cwd=ROOT, env={**env, "YAPO_CACHE_DIR": str(fresh)}, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "atlantis" in refused.stderr and not fresh.exists()
