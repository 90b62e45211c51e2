#!/usr/bin/env bash
# Rewrite every stored result under assets/results/ (the figures in README.md and docs/).
#
#   scripts/reproduce_results.sh                        # all of them
#   scripts/reproduce_results.sh comparison benchmark   # only the parts named
#
# Parts: demo-targets (scripts/evaluate_demo_world.py -> assets/results/demo-targets.md, .json: the default world's
#                     build, its cultures and behaviours, and every design target the script measures)
#        demo-open-1200 (the same with a culture's open answers at the behaviours' 1200 steps -> demo-targets-open-1200.md, .json)
#        demo-open-600 (the same with YaPO's open answers at BiPO's behaviour settings, not demo-open-steps' choice: 600 steps of 32
#                     pairs -> demo-targets-open-600.md, .json; demo-targets.md takes its MCQ rows from it)
#        demo-before-lm-scale (the same on the recipe before lm_scale=1.5 joined it, lm_scale=0, built in
#                     $YAPO_CACHE_DIR/demo-variants/before-lm-scale -> demo-targets-before-lm-scale.md, .json)
#        demo-before-sae-scale (the same on the recipe before sae_scale=4 joined it, sae_scale=0, built in
#                     $YAPO_CACHE_DIR/demo-variants/before-sae-scale -> demo-targets-before-sae-scale.md, .json)
#        demo-seed1  (the same from seed 1: the recipe before lm_scale=1.5 -> demo-targets-seed1.md, .json; the default
#                     recipe's behaviours with YaPO's open answers at 1200 steps of 16 -> demo-behaviours-seed1.md, .json, and its
#                     cultures -> demo-culture-seed1.md, .json; the recipe before
#                     fact_noise and behaviour_steering, built in
#                     $YAPO_CACHE_DIR/demo-variants/before-fact-noise-seed1 -> demo-targets-before-fact-noise-seed1.md,
#                     .json; and the cultures whose MCQ it steers least, on the recipe before sae_scale from seed 1
#                     (the same LM), built in before-sae-scale-seed1 -> demo-targets-before-sae-scale-seed1.md, .json;
#                     and 2400 against 3600 MCQ steps on those cultures' validation splits, on the first of them
#                     -> demo-mcq-lr-seed1.md, .json)
#        demo-probe  (scripts/probe_demo_world.py   -> assets/results/demo-probe.md, demo-probe-plain.md,
#                     demo-probe-followups.md, .json: the world of concept steering alone, the plain recipe, and the plain recipe
#                     with follow-ups, built in $YAPO_CACHE_DIR/demo-variants/followups)
#        demo-concept-steering (the same on the recipe before added_offer_facts joined it, concept_steering alone,
#                     built in $YAPO_CACHE_DIR/demo-variants/concept-steering-alone -> demo-targets-concept-steering.md,
#                     .json: what most studies below were measured against)
#        demo-plain  (the same on the plain recipe, concept_steering=0, built in $YAPO_CACHE_DIR/demo-variants/plain
#                     -> demo-targets-plain.md, .json, and its culture and behaviour sections alone ->
#                     demo-world-plain.md, demo-behaviours-plain.md, .json: what the variant studies compare with)
#        demo-forms  (scripts/probe_demo_world.py --forms-only -> demo-forms-NAME.md, .json: whether one direction
#                     sets the culture of both answer forms, on the world of concept steering alone, the plain recipe and six variants of it)
#        demo-lr     (scripts/choose_open_lr.py -> demo-open-lr.md, .json: the open-answer learning rates, and
#                     scripts/choose_mcq_lr.py -> demo-mcq-lr.md, .json: the MCQ training settings, chosen on
#                     validation splits of the training pairs of the recipe before sae_scale and of concept steering alone)
#        demo-open-steps (scripts/choose_open_lr.py --methods yapo on the default world, every culture and behaviour,
#                     at lr 0.01 with 600, 900 and 1200 steps of 32 pairs and 1200 of 16 -> demo-open-steps.md, .json:
#                     YaPO's open-answer settings, chosen on validation splits of the default recipe; and 1200
#                     against 2400 steps of 16 on brazil, nepal and the behaviours -> demo-open-steps-2400.md, .json;
#                     brazil's and nepal's test splits at 2400 -> demo-open-2400-brazil-nepal.md, .json; every
#                     culture's at 1200 and 2400 -> demo-open-steps-2400-cultures.md, .json; BiPO's -> demo-open-steps-bipo.md,
#                     demo-open-steps-bipo-2400.md, .json: its 2400 steps of 32 for a culture's open answers)
#        demo-open-rates (scripts/choose_open_lr.py on the plain recipe's world -> demo-open-lr-plain.md, .json;
#                     then scripts/evaluate_demo_world.py on egypt and the behaviours with the open-answer
#                     rates, from seed 0 and seed 1 of the plain recipe ->
#                     demo-open-rates-seed0.md, demo-open-rates-seed1.md, .json)
#        demo-variant (scripts/evaluate_demo_world.py --build-with ... -> demo-variant-NAME.md, .json for
#                     each variant world, built in $YAPO_CACHE_DIR/demo-variants/NAME; most are variants of the
#                     plain recipe, concept_steering=0)
#        demo-seeds  (scripts/compare_demo_worlds.py -> demo-seeds.md, .json: the plain recipe and
#                     general_in_context side by side from seeds 0, 1 and 2, read from demo-plain and demo-variant;
#                     demo-seeds-persona.md, .json: general_in_persona beside both, from seeds 0 and 2;
#                     demo-seeds-concepts.md, .json: concept_steering (the default recipe), and with
#                     behaviour_steering, beside the plain recipe, from seeds 0, 1 and 2)
#        demo-avx512 (scripts/evaluate_demo_world.py --sections behaviours with YAPO_CPU_KERNELS=native, on an
#                     AVX-512 CPU only -> demo-avx512-NAME.md, .json: the plain recipe; concept_steering, with
#                     specific_directions and with crossed_cues, from seeds 0, 1 and 2; side by side in demo-avx512.md)
#        comparison  (yapo compare --country egypt  -> assets/results/comparison-egypt/, and CAA and SAS up to
#                     multiplier 64 -> assets/results/comparison-egypt-baselines/; its open answers -> comparison-egypt-open/,
#                     and nepal's -> comparison-nepal-open/;
#                     yapo compare --behaviour NAME
#                     -> comparison-power-seeking/, comparison-wealth-seeking/: BiPO's protocol)
#        benchmark   (scripts/benchmark_trainer.py  -> assets/results/benchmark.md, .json)
#        demo-offer-facts (scripts/evaluate_demo_world.py --build-with offer_facts=0.3 -> demo-variant-offer-facts.md,
#                     .json: every section, seed 0; its behaviours from seed 1 -> demo-variant-offer-facts-seed1.md, .json;
#                     built in $YAPO_CACHE_DIR/demo-variants/offer-facts and offer-facts-seed1)
#        demo-added-offer-facts (the runs that chose added_offer_facts for the default recipe, which has it:
#                     scripts/evaluate_demo_world.py --build-with added_offer_facts=1 sae_scale=0 ->
#                     demo-variant-added-offer-facts-behaviours.md, -culture-uk-brazil-nepal.md,
#                     -culture-egypt-morocco-spain-india.md, .json: seed 0, one section or culture set a run;
#                     its behaviours from seed 1 -> demo-variant-added-offer-facts-seed1.md, .json;
#                     built in $YAPO_CACHE_DIR/demo-variants/added-offer-facts and added-offer-facts-seed1)
#        demo-answer-depth (scripts/evaluate_demo_world.py --sections culture --countries egypt,morocco,nepal
#                     --build-with mcq_text=1 answer_concepts=1, layers=5, layers=5 followups=0.15, layers=5
#                     answer_concepts=0.3, or layers=5 mcq_text=1 -> demo-variant-mcq-text-answer-concepts.md,
#                     demo-variant-layers5.md, demo-variant-layers5-followups.md,
#                     demo-variant-layers5-answer-concepts.md, demo-variant-layers5-mcq-text.md,
#                     .json: the default recipe, seed 0; built in $YAPO_CACHE_DIR/demo-variants/NAME)
#        demo-varied-answers (scripts/evaluate_demo_world.py --sections behaviours --build-with varied_answers=1 ->
#                     demo-variant-varied-recipe.md, .json: the default recipe, seed 0; built in
#                     $YAPO_CACHE_DIR/demo-variants/varied-recipe)
#        demo-answer-concepts (scripts/evaluate_demo_world.py --build-with answer_concepts=1 answer_first=1 sae_scale=0 ->
#                     demo-variant-answer-concepts.md, .json: the recipe before sae_scale, whose culture answers carry
#                     their culture, read off the options; every section, seed 0; built in
#                     $YAPO_CACHE_DIR/demo-variants/answer-concepts; and scripts/probe_demo_world.py --forms-only
#                     on it, on the recipe before sae_scale and on answer_concepts=1 alone (built in answer-concepts-letters) ->
#                     demo-forms-answer-concepts.md, demo-forms-baselines.md, demo-forms-answer-concepts-letters.md, .json;
#                     the same variant with an SAE trained four times longer, sae_scale=4, built in answer-concepts-sae4
#                     -> demo-variant-answer-concepts-sae4.md, .json)
#        demo-build-budget (a world built within the 300 s budget by training its LM on 0.6 of the corpus and its SAE
#                     on half the default's samples, lm_scale=0.6 sae_scale=2: scripts/evaluate_demo_world.py ->
#                     demo-variant-shorter-lm.md, .json, every section, seed 0; and the same with the LM's learning
#                     rate 1.5 times higher, lm_lr_scale=1.5, its build only -> demo-variant-shorter-lm-lr.md, .json;
#                     and the full training made cheaper per token, lm_batch_scale=2 mlp_scale=0.6667 fused_adam=1
#                     sae_batch_scale=4, its build only -> demo-variant-cheaper-steps.md, .json; and the LM's 1,800
#                     updates on 0.75 of the corpus, lm_scale=0.75 lm_batch_scale=0.75 fused_adam=1 sae_batch_scale=2,
#                     its build only -> demo-variant-fewer-examples.md, .json; built in
#                     $YAPO_CACHE_DIR/demo-variants/shorter-lm, shorter-lm-lr, cheaper-steps and fewer-examples)
#        demo-general-share (twice the corpus's share of general questions, general_share=0.12:
#                     scripts/evaluate_demo_world.py -> demo-variant-general-share.md, .json, every section, seed 0;
#                     and from seed 1 its behaviours -> demo-variant-general-share-seed1.md, .json and its
#                     cultures -> demo-variant-general-share-seed1-culture.md, .json; and with a larger share for
#                     the behaviours, behaviour_share=0.18, its behaviours -> demo-variant-general-behaviour-share.md,
#                     .json; and with general_share=0.09, its behaviours -> demo-variant-general-share-09.md, .json;
#                     built in $YAPO_CACHE_DIR/demo-variants/general-share, general-share-seed1,
#                     general-share-behaviours and general-share-09)
#        demo-build-time (the default world built alone in an empty folder: yapo demo build -> its stats.json as
#                     demo-build-quiet.json; run it on quiet cores; the stored file is the recipe before lm_scale's)
#        demo-seed2 (the recipe before lm_scale=1.5 from seed 2: scripts/evaluate_demo_world.py -> demo-targets-seed2.md,
#                     .json; the default recipe's behaviours and cultures from seed 2, with the app's settings ->
#                     demo-behaviours-seed2.md, demo-culture-seed2.md, .json; and its behaviours with YaPO's open
#                     answers at 600 steps of 32 pairs -> demo-behaviours-seed2-open-600.md, .json)
#        demo-seeds-both-pins (the behaviours of the recipe before lm_scale=1.5 from seeds 1 and 2, both CPU pins:
#                     scripts/evaluate_demo_world.py --sections behaviours -> demo-behaviours-seed1-both-pins.md,
#                     -seed2-both-pins.md, .json; built in $YAPO_CACHE_DIR/demo-variants/both-pins-seed1 and -seed2)
#        demo-before-fact-noise (the recipe before fact_noise=0.25 and behaviour_steering=0.7 joined the default one,
#                     from seeds 0 and 2, built in $YAPO_CACHE_DIR/demo-variants/before-fact-noise and -seed2 ->
#                     demo-targets-before-fact-noise.md, -seed2.md, .json: what the variant studies compare with)
#        demo-offer-answers (behaviour answers that name the offer, offer_answers=1: scripts/evaluate_demo_world.py
#                     --sections behaviours -> demo-variant-offer-answers.md, .json, seed 0; built in
#                     $YAPO_CACHE_DIR/demo-variants/offer-answers)
#        demo-fact-noise (general questions answered under a random direction, fact_noise=0.5:
#                     scripts/evaluate_demo_world.py -> demo-variant-fact-noise.md, .json, every section, seed 0;
#                     and from seeds 1 and 2 its behaviours -> demo-variant-fact-noise-seed1.md, -seed2.md, .json;
#                     built in $YAPO_CACHE_DIR/demo-variants/fact-noise, fact-noise-seed1 and fact-noise-seed2;
#                     and from seed 0 the behaviours of fact_noise=0.2, of fact_noise=0.5 with offer_noise=0.5,
#                     ab_noise=0.5 or steer_floor=0.25 -> demo-variant-fact-noise-02.md, -offer-noise.md, -ab-noise.md,
#                     -steer-floor.md, .json, built in fact-noise-02, offer-noise, ab-noise and steer-floor there;
#                     and ab_noise=0.5 from seed 1 -> demo-variant-ab-noise-seed1.md, .json, in ab-noise-seed1;
#                     and fact_noise=0.5 behaviour_steering=0.7, every section from seeds 0 and 2 and the
#                     behaviours from seed 1 -> demo-variant-fact-noise-behaviour-steering.md, -seed1.md, -seed2.md,
#                     .json, in fact-noise-behaviour-steering, -seed1 and -seed2)
#        demo-ab-decline (a firmer A/B form, on the recipe before lm_scale=1.5, with both pins: the plain A/B offers always
#                     declined, ab_decline=1; the LM's weights averaged over its last 30 % of steps, lm_average=0.3;
#                     general questions asked as A/B choices too, general_ab=0.06; half the plain offers asked about
#                     any offer, held-out ones too, known_offers=0.5: scripts/evaluate_demo_world.py --sections
#                     behaviours -> demo-variant-ab-decline.md, demo-variant-lm-average.md, demo-variant-general-ab.md,
#                     demo-variant-known-offers.md, .json, seed 0; and the LM trained twice as long, lm_scale=2, from
#                     seeds 0, 1 and 2 -> demo-variant-lm-scale2.md, -seed1.md, -seed2.md, seed 0's egypt and nepal ->
#                     demo-variant-lm-scale2-culture-egypt-nepal.md, .json, and seed 1's seven cultures with the app's
#                     open-answer settings -> demo-variant-lm-scale2-seed1-culture-nepal-india-uk-spain-brazil.md and
#                     demo-variant-lm-scale2-seed1-culture-egypt-morocco.md, .json; built in
#                     $YAPO_CACHE_DIR/demo-variants/ab-decline, lm-average, general-ab, known-offers, lm-scale2,
#                     lm-scale2-seed1 and lm-scale2-seed2)
#        demo-paths (which path a behaviour vector trained on open answers takes: scripts/probe_behaviour_paths.py
#                     on the recipe before lm_scale=1.5 (built in before-lm-scale) -> demo-paths.md, on the recipe before fact_noise from seeds 0 and 2 (demo-before-fact-noise's worlds) and on the fact-noise-02, offer-noise, steer-floor and
#                     ab-noise worlds -> demo-paths-before-fact-noise.md, -seed2.md, -fact-noise-02.md, -offer-noise.md, -steer-floor.md,
#                     -ab-noise.md, -ab-noise-seed1.md, -fact-noise-behaviour-steering.md and its -seed1.md, .json;
#                     run demo-fact-noise first, or the worlds are built here)
#        demo-mcq-picks (whose option a culture's MCQ vector picks: scripts/probe_mcq_picks.py for nepal against every
#                     option and brazil against the given answer, on the recipe before lm_scale=1.5 (-> demo-picks-nepal.md,
#                     demo-picks-brazil-given.md), on the recipe before fact_noise and on
#                     fact_noise=0.5 behaviour_steering=0.7 -> demo-picks-nepal-before-fact-noise.md,
#                     -nepal-fact-noise-behaviour-steering.md, -brazil-given-before-fact-noise.md,
#                     -brazil-given-fact-noise-behaviour-steering.md, .json; and whose answer each culture's
#                     open-answer vector gives, on the default world -> demo-open-picks.md, .json)
#        demo-pinned (scripts/evaluate_demo_world.py --sections behaviours on the plain recipe built in a fresh cache
#                     -> demo-behaviours-pinned.md, .json: the same build on another CPU, with the pinned kernels)
#        build-speed (scripts/benchmark_demo_build.py -> assets/results/build-speed.md, .json)
#        cpu-kernels (scripts/benchmark_cpu_kernels.py -> assets/results/cpu-kernels.md, .json)
#        real-size   (scripts/real_size_run.py      -> assets/results/real-size.md, real-size-bf16.md, .json)
#        shared-cpu  (scripts/benchmark_shared_cpu.py -> assets/results/shared-cpu.md, .json)
#        sharing     (scripts/benchmark_sharing.py  -> assets/results/sharing.md, sharing-simple.md, .json)
#        lm-eval     (scripts/lm_eval_check.py      -> assets/results/lm-eval-check.md, .json; needs .[eval])
#
# Every run rebuilds (or reuses) the world its stored file records. Each recipe before the default one
# (RECIPE_KNOBS) is the default with some of its knobs set to 0, written first so a run's own knobs win:
# $SHORTER_LM (lm_scale=0) is the recipe before the LM trained on 1.5 times the corpus, which every part that
# names no other recipe measured (demo-seed1's first run, demo-seed2's first, demo-seeds-both-pins, the first
# runs of demo-paths and demo-mcq-picks, and the variants of demo-answer-depth, demo-varied-answers,
# demo-fact-noise and demo-ab-decline); $PREVIOUS (behaviour_steering=0 fact_noise=0, and lm_scale=0) is the
# recipe before those two joined it, which demo-seed1's fourth run,
# demo-before-fact-noise, demo-build-budget, demo-general-share, demo-offer-answers, demo-fact-noise (the runs
# without behaviour_steering), demo-paths, demo-mcq-picks and demo-answer-concepts' sae4 run measured;
# $OLD_SAE adds sae_scale=0, the recipe before sae_scale (demo-before-sae-scale, demo-seed1's fifth run,
# demo-added-offer-facts, demo-lr's open-answer run, demo-answer-concepts); and $BEFORE adds added_offer_facts=0
# too, concept steering alone, on whose variants most studies were measured (demo-variant, demo-probe,
# demo-forms, demo-lr's MCQ run, demo-concept-steering, demo-plain, demo-open-rates, demo-offer-facts,
# demo-avx512, demo-pinned). demo-targets, demo-open-steps, demo-open-600, demo-seed1's second and third runs
# (demo-behaviours-seed1, demo-culture-seed1), demo-seed2's last three (demo-behaviours-seed2, demo-culture-seed2,
# demo-behaviours-seed2-open-600), demo-build-time
# and comparison measure the default recipe.
#
# Runs on a CPU, offline, from seed 0. The first part that needs the demo world builds it into
# the demo cache ($YAPO_CACHE_DIR, default ~/.cache/yapo-studio) and the others reuse it.
# The evaluation script exits 1 when the demo world misses one of its targets: its files are still
# written, the other parts still run, and this script exits 1 at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
RESULTS=assets/results
VARIANTS="${YAPO_CACHE_DIR:-$HOME/.cache/yapo-studio}/demo-variants"  # where the variant worlds are built
SHORTER_LM=(lm_scale=0)  # the recipe before the LM trained on 1.5 times the corpus: what every stored file but a few measures
PREVIOUS=("${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0)  # the recipe before those three joined RECIPE_KNOBS
BEFORE=(added_offer_facts=0 sae_scale=0 "${PREVIOUS[@]}")
OLD_SAE=(sae_scale=0 "${PREVIOUS[@]}")
# YaPO's open answers at 600 steps of 32 pairs, not demo-open-steps' 1200 of 16: what every stored evaluation and
# probe but demo-targets.md, demo-open-steps.md and comparison-* measured (the scripts' own options)
OPEN_BEFORE=(--open-settings 0.01:600:32)
PROBE_BEFORE=(--steps 600 --batch 32)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled

ALL_PARTS=(demo-targets demo-open-steps demo-open-600 demo-open-1200 demo-build-time demo-before-lm-scale demo-before-sae-scale demo-seed1 demo-seed2 demo-seeds-both-pins demo-before-fact-noise demo-concept-steering demo-lr demo-plain demo-probe demo-forms demo-open-rates demo-variant demo-avx512 demo-seeds demo-offer-facts demo-added-offer-facts demo-answer-concepts demo-answer-depth demo-varied-answers demo-build-budget demo-general-share demo-offer-answers demo-fact-noise demo-ab-decline demo-paths demo-mcq-picks comparison benchmark build-speed demo-pinned cpu-kernels real-size shared-cpu sharing lm-eval)
parts=("$@")
if [ ${#parts[@]} -eq 0 ]; then
  parts=("${ALL_PARTS[@]}")
fi

# evaluate NAME ARG...: scripts/evaluate_demo_world.py with these arguments -> assets/results/NAME.md and .json;
# a missed target (exit 1) does not stop this script, any other failure does.
evaluate() {
  local name=$1 status=0
  shift
  "$PYTHON" scripts/evaluate_demo_world.py "${OPEN_BEFORE[@]}" "$@" --json "$RESULTS/$name.json" > "$RESULTS/$name.md" || status=$?
  [ "$status" -le 1 ] || exit "$status"
}

# forms NAME [KNOB=VALUE...]: scripts/probe_demo_world.py --forms-only on egypt and morocco, on the
# default world (no knob) or on the variant world NAME -> assets/results/demo-forms-NAME.md and .json.
forms() {
  local name=$1
  shift
  local where=()
  [ $# -eq 0 ] || where=(--cache-dir "$VARIANTS/$name" --build-with "${BEFORE[@]}" "$@")
  "$PYTHON" scripts/probe_demo_world.py "${PROBE_BEFORE[@]}" --forms-only --country egypt,morocco "${where[@]}" \
    --out "$RESULTS/demo-forms-$name.md" > /dev/null
}

# variant NAME SEED COUNTRIES [KNOB=VALUE...]: the world built from SEED with these research knobs
# in $YAPO_CACHE_DIR/demo-variants/NAME (or reused from there), measured on COUNTRIES into
# assets/results/demo-variant-NAME.md and .json.
variant() {
  local name=$1 seed=$2 countries=$3
  shift 3
  evaluate "demo-variant-$name" --seed "$seed" --countries "$countries" \
    --generations "$(tr , '\n' <<< "$countries" | wc -l)" --build-with "${BEFORE[@]}" "$@" \
    --cache-dir "$VARIANTS/$name"
}

# avx512 NAME SEED [KNOB=VALUE...]: the behaviours of the world built from SEED with these knobs (none:
# the default recipe) with the CPU's AVX-512 kernels, in $YAPO_CACHE_DIR/demo-variants/avx512-NAME ->
# assets/results/demo-avx512-NAME.md and .json.
avx512() {
  local name=$1 seed=$2 status=0
  shift 2
  local knobs=()
  [ $# -eq 0 ] || knobs=(--build-with "${BEFORE[@]}" "$@")
  YAPO_CPU_KERNELS=native "$PYTHON" scripts/evaluate_demo_world.py "${OPEN_BEFORE[@]}" --sections behaviours --seed "$seed" "${knobs[@]}" \
    --cache-dir "$VARIANTS/avx512-$name" \
    --json "$RESULTS/demo-avx512-$name.json" > "$RESULTS/demo-avx512-$name.md" || status=$?
  [ "$status" -le 1 ] || exit "$status"
}

# MKL's code path joined yapo_core's CPU pin (yapo_core/_cpu.py) after most files were stored: those parts
# run with MKL's own choice, as they were built, by setting torch's pin by hand (a value set by hand leaves
# both to the user). The parts named here were measured with both pins; demo-avx512 asks for native kernels.
BOTH_PINS=(demo-targets demo-before-lm-scale comparison demo-avx512 demo-ab-decline demo-seeds-both-pins)
OWN_KERNELS="${ATEN_CPU_CAPABILITY-}"  # the user's own setting, if any, is left as it is

missed=0
mkdir -p "$RESULTS"
for part in "${parts[@]}"; do
  echo "== $part" >&2
  if [ -z "$OWN_KERNELS" ]; then
    if [[ " ${BOTH_PINS[*]} " == *" $part "* ]] || ! grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
      unset ATEN_CPU_CAPABILITY
    else
      export ATEN_CPU_CAPABILITY=avx2
    fi
  fi
  case "$part" in
    demo-targets)
      # stdout is the Markdown report; write it beside the old one and replace it only when the
      # script finished (exit 0: every target met, 1: one missed).
      status=0
      "$PYTHON" scripts/evaluate_demo_world.py --jobs 2 --json "$RESULTS/demo-targets.json.new" \
        > "$RESULTS/demo-targets.md.new" || status=$?
      if [ "$status" -gt 1 ]; then
        rm -f "$RESULTS/demo-targets.md.new" "$RESULTS/demo-targets.json.new"
        echo "scripts/evaluate_demo_world.py failed (exit $status)" >&2
        exit "$status"
      fi
      mv "$RESULTS/demo-targets.md.new" "$RESULTS/demo-targets.md"
      mv "$RESULTS/demo-targets.json.new" "$RESULTS/demo-targets.json"
      [ "$status" -eq 0 ] || missed=1
      ;;
    demo-before-lm-scale)
      # The recipe before the LM trained on 1.5 times the corpus (docs/results.md, "Design targets"): every section.
      evaluate demo-targets-before-lm-scale --jobs 2 --build-with "${SHORTER_LM[@]}" --cache-dir "$VARIANTS/before-lm-scale"
      ;;
    demo-before-sae-scale)
      # The recipe before the longer-trained SAE (docs/results.md, "A longer-trained SAE"): the same LM.
      evaluate demo-targets-before-sae-scale --jobs 2 --build-with "${OLD_SAE[@]}" --cache-dir "$VARIANTS/before-sae-scale"
      ;;
    demo-build-time)
      # The default world built alone in an empty folder (docs/results.md, "Build"): its stats, with the timings.
      fresh=$(mktemp -d)
      "$PYTHON" -m yapo_core demo build --cache-dir "$fresh/world" --quiet > /dev/null
      cp "$fresh/world/stats.json" "$RESULTS/demo-build-quiet.json"
      rm -rf "$fresh"
      ;;
    demo-open-600)
      evaluate demo-targets-open-600 --jobs 2 --open-settings 0.01:600:32
      ;;
    demo-open-1200)
      # a culture's open answers at the behaviours' 1200 steps, half the app's (the behaviours keep theirs)
      evaluate demo-targets-open-1200 --jobs 2 --open-settings 0.01:1200:16 --mcq-from "$RESULTS/demo-targets-open-600.json"
      ;;
    demo-seed2)
      # The default recipe from a third seed (docs/results.md, "Design targets"); missed targets do not fail this script.
      evaluate demo-targets-seed2 --jobs 2 --seed 2 --build-with "${SHORTER_LM[@]}" --cache-dir "$VARIANTS/before-lm-scale-seed2"
      # the default recipe's behaviours and cultures with the app's own open-answer settings (OPEN_TRAINING)
      evaluate demo-behaviours-seed2 --jobs 2 --seed 2 --sections behaviours --open-settings 0.01:1200:16
      evaluate demo-culture-seed2 --jobs 2 --seed 2 --sections culture --open-settings 0.01:1200:16
      evaluate demo-behaviours-seed2-open-600 --jobs 2 --seed 2 --sections behaviours  # YaPO's open answers at 600 x 32
      ;;
    demo-seeds-both-pins)
      # The default recipe's behaviours from seeds 1 and 2 on the world both pins build (docs/results.md, "Design
      # targets"); missed targets do not fail this script.
      for seed in 1 2; do
        evaluate "demo-behaviours-seed$seed-both-pins" --jobs 2 --seed "$seed" --sections behaviours \
          --build-with "${SHORTER_LM[@]}" --cache-dir "$VARIANTS/both-pins-seed$seed"
      done
      ;;
    demo-before-fact-noise)
      # The recipe before behaviour_steering and fact_noise joined it, from seeds 0 and 2 (docs/results.md,
      # "Design targets"): what the variant studies after it compare with.
      for seed in 0 2; do
        suffix=""
        [ "$seed" = 0 ] || suffix="-seed$seed"
        evaluate "demo-targets-before-fact-noise$suffix" --jobs 2 --seed "$seed" --build-with "${PREVIOUS[@]}" \
          --cache-dir "$VARIANTS/before-fact-noise$suffix"
      done
      ;;
    demo-seed1)
      # The default recipe from seed 1 (docs/results.md, "Design targets"); the recipe before fact_noise from seed 1,
      # and the same LM with the SAE before sae_scale (docs/results.md, "A longer-trained SAE"); missed targets do
      # not fail this script.
      evaluate demo-targets-seed1 --jobs 2 --seed 1 --build-with "${SHORTER_LM[@]}" --cache-dir "$VARIANTS/before-lm-scale-seed1"
      # the default recipe's behaviours with the app's own open-answer settings (OPEN_TRAINING)
      evaluate demo-behaviours-seed1 --jobs 2 --seed 1 --sections behaviours --open-settings 0.01:1200:16
      evaluate demo-culture-seed1 --jobs 2 --seed 1 --sections culture --open-settings 0.01:1200:16
      evaluate demo-targets-before-fact-noise-seed1 --jobs 2 --seed 1 --build-with "${PREVIOUS[@]}" \
        --cache-dir "$VARIANTS/before-fact-noise-seed1"
      evaluate demo-targets-before-sae-scale-seed1 --jobs 2 --seed 1 --build-with "${OLD_SAE[@]}" --sections culture \
        --countries morocco,uk,spain,nepal --generations 0 --cache-dir "$VARIANTS/before-sae-scale-seed1"
      # whether longer MCQ training lifts the seed-1 build's weakest cultures (docs/results.md, "Design targets")
      "$PYTHON" scripts/choose_mcq_lr.py --seed 1 --methods yapo --countries morocco,uk,spain \
        --candidates 0.01:2400:16,0.01:3600:16 --jobs 2 --build-with "${PREVIOUS[@]}" \
        --cache-dir "$VARIANTS/before-fact-noise-seed1" \
        --out "$RESULTS/demo-mcq-lr-seed1.md"
      ;;
    demo-concept-steering)
      evaluate demo-targets-concept-steering --jobs 2 --build-with "${BEFORE[@]}" --cache-dir "$VARIANTS/concept-steering-alone"
      ;;
    demo-plain)
      # The plain recipe (concept_steering=0) from seed 0: every section, and the culture and behaviour sections
      # on their own (with more examples and, for the behaviours, each vector's edit): what the variant studies
      # compare with.
      plain=(--build-with concept_steering=0 "${BEFORE[@]}" --cache-dir "$VARIANTS/plain")
      for run in "targets --generations 1" "world --sections culture" "behaviours --sections behaviours"; do
        read -r name args <<< "$run"
        status=0
        # shellcheck disable=SC2086
        "$PYTHON" scripts/evaluate_demo_world.py "${OPEN_BEFORE[@]}" $args "${plain[@]}" \
          --json "$RESULTS/demo-$name-plain.json" > "$RESULTS/demo-$name-plain.md" || status=$?
        [ "$status" -le 1 ] || exit "$status"
      done
      ;;
    demo-forms)
      # "default": the world of concept steering alone, the default world when it was measured
      "$PYTHON" scripts/probe_demo_world.py "${PROBE_BEFORE[@]}" --forms-only --country egypt,morocco --build-with "${BEFORE[@]}" \
        --cache-dir "$VARIANTS/concept-steering-alone" --out "$RESULTS/demo-forms-default.md" > /dev/null
      forms plain concept_steering=0
      forms balanced concept_steering=0 balanced_options=1
      forms context-balanced concept_steering=0 balanced_options=1 followups=0.15 coherent_text=1
      forms answer-first-balanced concept_steering=0 answer_first=1 balanced_options=1
      forms shuffled-answer-first concept_steering=0 shuffled_options=1 answer_first=1
      forms options4 concept_steering=0 mcq_options=4
      forms options4-longer concept_steering=0 mcq_options=4 lm_scale=3  # a build of about 35 min
      ;;
    demo-probe)
      # on the world of concept steering alone (the default world when it was measured)
      "$PYTHON" scripts/probe_demo_world.py "${PROBE_BEFORE[@]}" --lr 0.01 --build-with "${BEFORE[@]}" \
        --cache-dir "$VARIANTS/concept-steering-alone" --out "$RESULTS/demo-probe.md" > /dev/null
      "$PYTHON" scripts/probe_demo_world.py "${PROBE_BEFORE[@]}" --lr 0.01 --build-with concept_steering=0 "${BEFORE[@]}" \
        --cache-dir "$VARIANTS/plain" \
        --out "$RESULTS/demo-probe-plain.md" > /dev/null
      "$PYTHON" scripts/probe_demo_world.py "${PROBE_BEFORE[@]}" --lr 0.01 --build-with concept_steering=0 followups=0.08 "${BEFORE[@]}" \
        --cache-dir "$VARIANTS/followups" \
        --out "$RESULTS/demo-probe-followups.md" > /dev/null
      ;;
    demo-lr)
      # each on the world it was chosen on: the open-answer rates on the recipe before sae_scale, the MCQ
      # settings on concept steering alone
      "$PYTHON" scripts/choose_open_lr.py --candidates 0.005:600:32,0.007:600:32,0.01:600:32 \
        --build-with "${OLD_SAE[@]}" --cache-dir "$VARIANTS/before-sae-scale" --out "$RESULTS/demo-open-lr.md" > /dev/null
      "$PYTHON" scripts/choose_mcq_lr.py --methods yapo --candidates 0.01:1200:16,0.01:2400:16 --jobs 2 \
        --build-with "${BEFORE[@]}" --cache-dir "$VARIANTS/concept-steering-alone" --out "$RESULTS/demo-mcq-lr.md" > /dev/null
      ;;
    demo-open-steps)
      # YaPO's open-answer settings on the default world; the rate stays at 0.01 (20x the public runs' 5e-4)
      "$PYTHON" scripts/choose_open_lr.py --methods yapo --countries egypt,morocco,uk,spain,brazil,india,nepal --jobs 2 \
        --candidates 0.01:600:32,0.01:900:32,0.01:1200:32,0.01:1200:16 --out "$RESULTS/demo-open-steps.md" > /dev/null
      # twice the chosen steps, on the two cultures short of every validation answer and the behaviours
      "$PYTHON" scripts/choose_open_lr.py --methods yapo --countries brazil,nepal --jobs 2 \
        --candidates 0.01:1200:16,0.01:2400:16 --out "$RESULTS/demo-open-steps-2400.md" > /dev/null
      "$PYTHON" scripts/evaluate_demo_world.py --jobs 2 --sections culture --countries brazil,nepal \
        --open-settings 0.01:2400:16 --mcq-from "$RESULTS/demo-targets.json" \
        --json "$RESULTS/demo-open-2400-brazil-nepal.json" > "$RESULTS/demo-open-2400-brazil-nepal.md" || [ $? -eq 1 ]  # 1: a target missed (the build budget, target 4)
      # the same two candidates on every culture's open answers alone: 2400 steps for a culture's open answers
      "$PYTHON" scripts/choose_open_lr.py --methods yapo --kinds culture --countries egypt,morocco,uk,spain,brazil,india,nepal --jobs 2 \
        --candidates 0.01:1200:16,0.01:2400:16 --out "$RESULTS/demo-open-steps-2400-cultures.md" > /dev/null
      # BiPO's open-answer settings chosen on an earlier world (600 steps of 32) against twice the steps, on this world
      "$PYTHON" scripts/choose_open_lr.py --methods bipo --countries egypt,morocco,uk,spain,brazil,india,nepal --jobs 2 \
        --candidates 0.01:600:32,0.01:1200:32,0.01:1200:16 --out "$RESULTS/demo-open-steps-bipo.md" > /dev/null
      # the better of those on every culture's open answers alone against twice its steps: 2400 steps of 32 for a culture's
      "$PYTHON" scripts/choose_open_lr.py --methods bipo --kinds culture --countries egypt,morocco,uk,spain,brazil,india,nepal --jobs 2 \
        --candidates 0.01:1200:32,0.01:2400:32 --out "$RESULTS/demo-open-steps-bipo-2400.md" > /dev/null
      ;;
    demo-open-rates)
      # On the plain recipe (concept_steering=0).
      "$PYTHON" scripts/choose_open_lr.py --candidates 0.002:600:32,0.005:600:32,0.007:600:32,0.01:600:32 --out "$RESULTS/demo-open-lr-plain.md" \
        --build-with concept_steering=0 "${BEFORE[@]}" \
        --cache-dir "$VARIANTS/plain" > /dev/null
      for seed in 0 1; do
        status=0
        suffix=""
        [ "$seed" -eq 0 ] || suffix="-seed$seed"
        "$PYTHON" scripts/evaluate_demo_world.py "${OPEN_BEFORE[@]}" --seed "$seed" --build-with concept_steering=0 "${BEFORE[@]}" \
          --cache-dir "$VARIANTS/plain$suffix" --countries egypt --generations 1 \
          --json "$RESULTS/demo-open-rates-seed$seed.json" > "$RESULTS/demo-open-rates-seed$seed.md" || status=$?
        [ "$status" -le 1 ] || exit "$status"
      done
      ;;
    demo-variant)
      # Variant worlds (docs/results.md, "Variant worlds"); their missed targets do not fail this script.
      variant seed1 1 egypt concept_steering=0  # the stored world's recipe from another seed: the spread between builds
      variant balanced 0 egypt,morocco concept_steering=0 balanced_options=1
      variant varied-only 0 egypt concept_steering=0 varied_answers=1
      variant fewer-followups 0 egypt concept_steering=0 varied_answers=1 behaviour_followups=0.03
      variant fewer-followups-seed1 1 egypt concept_steering=0 varied_answers=1 behaviour_followups=0.03  # the same from another seed
      variant varied 0 egypt,morocco,uk concept_steering=0 varied_answers=1 behaviour_followups=0.08
      variant open-followups 0 egypt concept_steering=0 varied_answers=1 behaviour_followups=0.08 open_followups=1
      variant fewer-followups-balanced 0 egypt concept_steering=0 varied_answers=1 behaviour_followups=0.03 balanced_options=1
      variant varied-balanced 0 egypt concept_steering=0 varied_answers=1 behaviour_followups=0.08 balanced_options=1
      variant answer-first-balanced 0 egypt,morocco concept_steering=0 answer_first=1 balanced_options=1
      variant plain-seed1 1 egypt,morocco concept_steering=0  # the plain recipe from seed 1, against the design targets
      variant general-in-context 0 egypt,morocco concept_steering=0 general_in_context=0.5
      variant general-in-context-seed1 1 egypt,morocco concept_steering=0 general_in_context=0.5
      variant plain-seed2 2 egypt,morocco concept_steering=0
      variant general-in-context-seed2 2 egypt,morocco concept_steering=0 general_in_context=0.5
      variant general-in-persona 0 egypt,morocco concept_steering=0 general_in_persona=0.25
      variant general-in-persona-seed2 2 egypt,morocco concept_steering=0 general_in_persona=0.25
      variant concept-steering 0 egypt,morocco concept_steering=0.3
      variant concept-steering-seed1 1 egypt,morocco concept_steering=0.3
      variant concept-steering-seed2 2 egypt,morocco concept_steering=0.3
      variant behaviour-steering 0 egypt,morocco concept_steering=0.3 behaviour_steering=0.7
      variant behaviour-steering-seed1 1 egypt,morocco concept_steering=0.3 behaviour_steering=0.7
      variant behaviour-steering-seed2 2 egypt,morocco concept_steering=0.3 behaviour_steering=0.7
      variant cross-steering-seed1 1 egypt,morocco concept_steering=0.3 behaviour_steering=0.7 cross_steering=0.3
      ;;
    demo-avx512)
      # Behaviours only, on builds made with the CPU's AVX-512 kernels (YAPO_CPU_KERNELS=native):
      # they reproduce on an AVX-512 CPU only (docs/results.md, "Directions that tell the behaviours apart").
      if ! grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
        echo "demo-avx512: this CPU has no AVX-512; skipped" >&2
      else
        avx512 plain 0 concept_steering=0
        for seed in 0 1 2; do
          suffix=""
          [ "$seed" -eq 0 ] || suffix="-seed$seed"
          avx512 "concept-steering$suffix" "$seed" concept_steering=0.3
          avx512 "specific-directions$suffix" "$seed" concept_steering=0.3 specific_directions=1
          avx512 "crossed-cues$suffix" "$seed" concept_steering=0.3 crossed_cues=0.5
        done
        "$PYTHON" scripts/compare_demo_worlds.py \
          "plain=$RESULTS/demo-avx512-plain.json" \
          "concept steering=$RESULTS/demo-avx512-concept-steering.json,$RESULTS/demo-avx512-concept-steering-seed1.json,$RESULTS/demo-avx512-concept-steering-seed2.json" \
          "specific directions=$RESULTS/demo-avx512-specific-directions.json,$RESULTS/demo-avx512-specific-directions-seed1.json,$RESULTS/demo-avx512-specific-directions-seed2.json" \
          "crossed cues=$RESULTS/demo-avx512-crossed-cues.json,$RESULTS/demo-avx512-crossed-cues-seed1.json,$RESULTS/demo-avx512-crossed-cues-seed2.json" \
          --out "$RESULTS/demo-avx512.md" > /dev/null
      fi
      ;;
    demo-seeds)
      # A knob against the spread between builds: each recipe from three seeds (docs/results.md)
      "$PYTHON" scripts/compare_demo_worlds.py \
        "plain=$RESULTS/demo-targets-plain.json,$RESULTS/demo-variant-plain-seed1.json,$RESULTS/demo-variant-plain-seed2.json" \
        "general in context=$RESULTS/demo-variant-general-in-context.json,$RESULTS/demo-variant-general-in-context-seed1.json,$RESULTS/demo-variant-general-in-context-seed2.json" \
        --out "$RESULTS/demo-seeds.md" > /dev/null
      # general_in_persona, built from seeds 0 and 2, beside the two recipes from the same seeds
      "$PYTHON" scripts/compare_demo_worlds.py \
        "plain=$RESULTS/demo-targets-plain.json,$RESULTS/demo-variant-plain-seed2.json" \
        "general in context=$RESULTS/demo-variant-general-in-context.json,$RESULTS/demo-variant-general-in-context-seed2.json" \
        "general in persona=$RESULTS/demo-variant-general-in-persona.json,$RESULTS/demo-variant-general-in-persona-seed2.json" \
        --out "$RESULTS/demo-seeds-persona.md" > /dev/null
      # concept_steering (the default recipe; alone and with behaviour_steering), seeds 0, 1 and 2, beside the plain one
      "$PYTHON" scripts/compare_demo_worlds.py \
        "plain=$RESULTS/demo-targets-plain.json,$RESULTS/demo-variant-plain-seed1.json,$RESULTS/demo-variant-plain-seed2.json" \
        "concept steering=$RESULTS/demo-variant-concept-steering.json,$RESULTS/demo-variant-concept-steering-seed1.json,$RESULTS/demo-variant-concept-steering-seed2.json" \
        "behaviour steering=$RESULTS/demo-variant-behaviour-steering.json,$RESULTS/demo-variant-behaviour-steering-seed1.json,$RESULTS/demo-variant-behaviour-steering-seed2.json" \
        --out "$RESULTS/demo-seeds-concepts.md" > /dev/null
      ;;
    comparison)
      "$PYTHON" -m yapo_core compare --country egypt --out "$RESULTS/comparison-egypt"
      "$PYTHON" -m yapo_core compare --country egypt --methods caa,sas --multipliers 0,1,2,4,8,16,32,64 \
        --out "$RESULTS/comparison-egypt-baselines"
      "$PYTHON" -m yapo_core compare --country egypt --form open_ended --out "$RESULTS/comparison-egypt-open"
      "$PYTHON" -m yapo_core compare --country nepal --form open_ended --out "$RESULTS/comparison-nepal-open"
      "$PYTHON" -m yapo_core compare --behaviour power-seeking --out "$RESULTS/comparison-power-seeking"
      "$PYTHON" -m yapo_core compare --behaviour wealth-seeking --out "$RESULTS/comparison-wealth-seeking"
      ;;
    benchmark)
      "$PYTHON" scripts/benchmark_trainer.py  # writes $RESULTS/benchmark.md and .json
      ;;
    demo-offer-facts)
      # The default recipe with offer_facts (docs/results.md, "Offers the model knows"); missed targets do not fail this script.
      status=0
      "$PYTHON" scripts/evaluate_demo_world.py "${OPEN_BEFORE[@]}" --jobs 2 --build-with offer_facts=0.3 "${BEFORE[@]}" \
        --cache-dir "$VARIANTS/offer-facts" \
        --json "$RESULTS/demo-variant-offer-facts.json" > "$RESULTS/demo-variant-offer-facts.md" || status=$?
      [ "$status" -le 1 ] || exit "$status"
      "$PYTHON" scripts/evaluate_demo_world.py "${OPEN_BEFORE[@]}" --sections behaviours --seed 1 --jobs 2 --build-with offer_facts=0.3 "${BEFORE[@]}" \
        --cache-dir "$VARIANTS/offer-facts-seed1" \
        --json "$RESULTS/demo-variant-offer-facts-seed1.json" > "$RESULTS/demo-variant-offer-facts-seed1.md" || status=$?
      [ "$status" -le 1 ] || exit "$status"
      ;;
    demo-added-offer-facts)
      # Offer statements added to the plain text (docs/results.md, "Offer statements beside the others"): the runs
      # that chose the knob, in their own caches (the default recipe has it now); missed targets do not fail this script.
      world="$VARIANTS/before-sae-scale"  # the same knobs
      name=demo-variant-added-offer-facts
      evaluate "$name-behaviours" --sections behaviours --jobs 2 --build-with added_offer_facts=1 "${OLD_SAE[@]}" --cache-dir "$world"
      for run in uk,brazil,nepal:0 egypt,morocco,spain,india:2; do  # cultures:how many show generations
        countries="${run%:*}"
        evaluate "$name-culture-${countries//,/-}" --sections culture --countries "$countries" --generations "${run#*:}" \
          --jobs 2 --build-with added_offer_facts=1 "${OLD_SAE[@]}" --cache-dir "$world"
      done
      evaluate "$name-seed1" --sections behaviours --seed 1 --jobs 2 --build-with added_offer_facts=1 "${OLD_SAE[@]}" \
        --cache-dir "$world-seed1"
      ;;
    demo-answer-concepts)
      # Culture answers that carry their culture's direction, with the option's text before its letter
      # (docs/results.md, "Answers that carry their culture"), on top of the recipe before sae_scale; missed targets
      # do not fail this script.
      world="$VARIANTS/answer-concepts"
      evaluate demo-variant-answer-concepts --jobs 2 --build-with answer_concepts=1 answer_first=1 "${OLD_SAE[@]}" --cache-dir "$world"
      evaluate demo-variant-answer-concepts-sae4 --jobs 2 --build-with "${PREVIOUS[@]}" answer_concepts=1 answer_first=1 sae_scale=4 \
        --cache-dir "$world-sae4"
      # where CAA and SAS point against the cue direction the model acts on, on the recipe before sae_scale (the
      # world demo-before-sae-scale measures) and on this one
      "$PYTHON" scripts/probe_demo_world.py "${PROBE_BEFORE[@]}" --forms-only --country egypt,morocco,nepal --build-with "${OLD_SAE[@]}" \
        --cache-dir "$VARIANTS/before-sae-scale" \
        --out "$RESULTS/demo-forms-baselines.md" > /dev/null
      "$PYTHON" scripts/probe_demo_world.py "${PROBE_BEFORE[@]}" --forms-only --country egypt,morocco,nepal --cache-dir "$world" \
        --build-with answer_concepts=1 answer_first=1 "${OLD_SAE[@]}" --out "$RESULTS/demo-forms-answer-concepts.md" > /dev/null
      "$PYTHON" scripts/probe_demo_world.py "${PROBE_BEFORE[@]}" --forms-only --country egypt,morocco,nepal --cache-dir "$world-letters" \
        --build-with answer_concepts=1 "${OLD_SAE[@]}" --out "$RESULTS/demo-forms-answer-concepts-letters.md" > /dev/null
      ;;
    demo-answer-depth)
      # Answers that give their letter, then the option's text, and a five-block LM with its SAE at block 2
      # (docs/results.md, "The letter first, then the option's text; a deeper model"), on the default recipe, three
      # cultures, culture sections only; missed targets do not fail this script.
      for variant in "mcq-text-answer-concepts mcq_text=1 answer_concepts=1" "layers5 layers=5" \
                     "layers5-followups layers=5 followups=0.15" "layers5-answer-concepts layers=5 answer_concepts=0.3" \
                     "layers5-mcq-text layers=5 mcq_text=1"; do
        read -r name knobs <<< "$variant"
        # shellcheck disable=SC2086  # the knobs are words
        evaluate "demo-variant-$name" --jobs 2 --sections culture --countries egypt,morocco,nepal --build-with "${SHORTER_LM[@]}" $knobs \
          --cache-dir "$VARIANTS/$name"
      done
      ;;
    demo-varied-answers)
      # Behaviour answers joined from 5 openers and 6 reasons, on the default recipe (docs/results.md, "Answers that
      # name the offer"); missed targets do not fail this script.
      evaluate demo-variant-varied-recipe --jobs 2 --sections behaviours --build-with "${SHORTER_LM[@]}" varied_answers=1 \
        --cache-dir "$VARIANTS/varied-recipe"
      ;;
    demo-build-budget)
      # A shorter-trained LM and SAE, for the build budget (docs/results.md, "A build within 300 s"); missed
      # targets do not fail this script.
      world="$VARIANTS/shorter-lm"
      evaluate demo-variant-shorter-lm --jobs 2 --build-with "${PREVIOUS[@]}" lm_scale=0.6 sae_scale=2 --cache-dir "$world"
      evaluate demo-variant-shorter-lm-lr --no-steering --build-with "${PREVIOUS[@]}" lm_scale=0.6 lm_lr_scale=1.5 sae_scale=2 \
        --cache-dir "$world-lr"
      # the full training made cheaper per token (scripts/benchmark_demo_build.py's changes together), its build only
      evaluate demo-variant-cheaper-steps --no-steering --build-with "${PREVIOUS[@]}" lm_batch_scale=2 mlp_scale=0.6667 fused_adam=1 \
        sae_batch_scale=4 --cache-dir "$VARIANTS/cheaper-steps"
      # as many LM updates as the default's, on 0.75 of its examples (batches of 24), its build only
      evaluate demo-variant-fewer-examples --no-steering --build-with "${PREVIOUS[@]}" lm_scale=0.75 lm_batch_scale=0.75 fused_adam=1 \
        sae_batch_scale=2 --cache-dir "$VARIANTS/fewer-examples"
      ;;
    demo-general-share)
      # Firmer facts (docs/results.md, "Firmer facts"); missed targets do not fail this script.
      world="$VARIANTS/general-share"
      evaluate demo-variant-general-share --jobs 2 --build-with "${PREVIOUS[@]}" general_share=0.12 --cache-dir "$world"
      evaluate demo-variant-general-share-seed1 --seed 1 --jobs 2 --sections behaviours --build-with "${PREVIOUS[@]}" general_share=0.12 \
        --cache-dir "$world-seed1"
      evaluate demo-variant-general-share-seed1-culture --seed 1 --jobs 2 --sections culture \
        --build-with "${PREVIOUS[@]}" general_share=0.12 --cache-dir "$world-seed1"
      # the same with half as many behaviour offers again, its behaviours
      evaluate demo-variant-general-behaviour-share --jobs 2 --sections behaviours \
        --build-with "${PREVIOUS[@]}" general_share=0.12 behaviour_share=0.18 --cache-dir "$world-behaviours"
      # half as many more general questions (general_share=0.09), its behaviours
      evaluate demo-variant-general-share-09 --jobs 2 --sections behaviours --build-with "${PREVIOUS[@]}" general_share=0.09 \
        --cache-dir "$world-09"
      ;;
    demo-offer-answers)
      # Answers that name the offer (docs/results.md, "Answers that name the offer"); missed targets do not fail this script.
      evaluate demo-variant-offer-answers --jobs 2 --sections behaviours --build-with "${PREVIOUS[@]}" offer_answers=1 \
        --cache-dir "$VARIANTS/offer-answers"
      ;;
    demo-fact-noise)
      # Facts under any edit (docs/results.md, "Facts under any edit"); missed targets do not fail this script.
      world="$VARIANTS/fact-noise"
      evaluate demo-variant-fact-noise --jobs 2 --build-with "${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0.5 --cache-dir "$world"
      for seed in 1 2; do
        evaluate "demo-variant-fact-noise-seed$seed" --seed "$seed" --jobs 2 --sections behaviours \
          --build-with "${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0.5 --cache-dir "$world-seed$seed"
      done
      evaluate demo-variant-fact-noise-02 --jobs 2 --sections behaviours --build-with "${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0.2 \
        --cache-dir "$VARIANTS/fact-noise-02"
      for knob in offer_noise ab_noise steer_floor; do
        value=0.5
        [ "$knob" = steer_floor ] && value=0.25
        evaluate "demo-variant-${knob//_/-}" --jobs 2 --sections behaviours --build-with "${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0.5 "$knob=$value" \
          --cache-dir "$VARIANTS/${knob//_/-}"
      done
      evaluate demo-variant-ab-noise-seed1 --seed 1 --jobs 2 --sections behaviours --build-with "${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0.5 \
        ab_noise=0.5 --cache-dir "$VARIANTS/ab-noise-seed1"
      # every section from seeds 0 and 2, the behaviours from seed 1
      for run in 0: 1:behaviours 2:; do
        seed="${run%%:*}" sections=()
        suffix=""
        [ "$seed" = 0 ] || suffix="-seed$seed"
        [ -z "${run#*:}" ] || sections=(--sections "${run#*:}")
        evaluate "demo-variant-fact-noise-behaviour-steering$suffix" --seed "$seed" --jobs 2 "${sections[@]}" \
          --build-with "${SHORTER_LM[@]}" fact_noise=0.5 behaviour_steering=0.7 --cache-dir "$VARIANTS/fact-noise-behaviour-steering$suffix"
      done
      ;;
    demo-ab-decline)
      # A firmer A/B default, and averaged weights (docs/results.md, "A firmer A/B default"); missed targets do not
      # fail this script.
      evaluate demo-variant-ab-decline --jobs 2 --sections behaviours --build-with "${SHORTER_LM[@]}" ab_decline=1 \
        --cache-dir "$VARIANTS/ab-decline"
      evaluate demo-variant-lm-average --jobs 2 --sections behaviours --build-with "${SHORTER_LM[@]}" lm_average=0.3 \
        --cache-dir "$VARIANTS/lm-average"
      evaluate demo-variant-general-ab --jobs 2 --sections behaviours --build-with "${SHORTER_LM[@]}" general_ab=0.06 \
        --cache-dir "$VARIANTS/general-ab"
      evaluate demo-variant-known-offers --jobs 2 --sections behaviours --build-with "${SHORTER_LM[@]}" known_offers=0.5 \
        --cache-dir "$VARIANTS/known-offers"
      # the LM trained on twice the corpus (over the build budget), from seeds 0, 1 and 2
      for seed in 0 1 2; do
        suffix=""
        [ "$seed" = 0 ] || suffix="-seed$seed"
        evaluate "demo-variant-lm-scale2$suffix" --seed "$seed" --jobs 2 --sections behaviours --build-with lm_scale=2 \
          --cache-dir "$VARIANTS/lm-scale2$suffix"
      done
      evaluate demo-variant-lm-scale2-culture-egypt-nepal --jobs 2 --sections culture --countries egypt,nepal \
        --build-with lm_scale=2 --cache-dir "$VARIANTS/lm-scale2"
      # seed 1's cultures, with the app's open-answer settings as demo-culture-seed1 (in two runs)
      for countries in nepal,india,uk,spain,brazil egypt,morocco; do
        evaluate "demo-variant-lm-scale2-seed1-culture-${countries//,/-}" --seed 1 --jobs 2 --sections culture \
          --countries "$countries" --open-settings 0.01:1200:16 --build-with lm_scale=2 --cache-dir "$VARIANTS/lm-scale2-seed1"
      done
      ;;
    demo-paths)
      # Which path a behaviour vector takes (docs/results.md, "Which path a behaviour vector takes").
      "$PYTHON" scripts/probe_behaviour_paths.py "${PROBE_BEFORE[@]}" --cache-dir "$VARIANTS/before-lm-scale" --build-with "${SHORTER_LM[@]}" \
        --out "$RESULTS/demo-paths.md"
      for seed in 0 2; do
        suffix=""
        [ "$seed" = 0 ] || suffix="-seed$seed"
        "$PYTHON" scripts/probe_behaviour_paths.py "${PROBE_BEFORE[@]}" --seed "$seed" --cache-dir "$VARIANTS/before-fact-noise$suffix" \
          --build-with "${PREVIOUS[@]}" --out "$RESULTS/demo-paths-before-fact-noise$suffix.md"
      done
      "$PYTHON" scripts/probe_behaviour_paths.py "${PROBE_BEFORE[@]}" --cache-dir "$VARIANTS/fact-noise-02" --build-with "${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0.2 \
        --out "$RESULTS/demo-paths-fact-noise-02.md"
      "$PYTHON" scripts/probe_behaviour_paths.py "${PROBE_BEFORE[@]}" --cache-dir "$VARIANTS/offer-noise" --build-with "${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0.5 \
        offer_noise=0.5 --out "$RESULTS/demo-paths-offer-noise.md"
      "$PYTHON" scripts/probe_behaviour_paths.py "${PROBE_BEFORE[@]}" --cache-dir "$VARIANTS/steer-floor" --build-with "${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0.5 \
        steer_floor=0.25 --out "$RESULTS/demo-paths-steer-floor.md"
      "$PYTHON" scripts/probe_behaviour_paths.py "${PROBE_BEFORE[@]}" --cache-dir "$VARIANTS/ab-noise" --build-with "${SHORTER_LM[@]}" behaviour_steering=0 fact_noise=0.5 \
        ab_noise=0.5 --out "$RESULTS/demo-paths-ab-noise.md"
      "$PYTHON" scripts/probe_behaviour_paths.py "${PROBE_BEFORE[@]}" --seed 1 --cache-dir "$VARIANTS/ab-noise-seed1" --build-with "${SHORTER_LM[@]}" \
        behaviour_steering=0 fact_noise=0.5 ab_noise=0.5 --out "$RESULTS/demo-paths-ab-noise-seed1.md"
      for seed in 0 1; do
        suffix=""
        [ "$seed" = 1 ] && suffix="-seed1"
        "$PYTHON" scripts/probe_behaviour_paths.py "${PROBE_BEFORE[@]}" --seed "$seed" --cache-dir "$VARIANTS/fact-noise-behaviour-steering$suffix" \
          --build-with "${SHORTER_LM[@]}" fact_noise=0.5 behaviour_steering=0.7 --out "$RESULTS/demo-paths-fact-noise-behaviour-steering$suffix.md"
      done
      ;;
    demo-mcq-picks)
      # Whose option a culture's MCQ vector picks (docs/results.md, "Firm facts with a larger share for the
      # behaviours"): nepal against every option and brazil against the given answer, on the recipe before lm_scale, on the
      # recipe before fact_noise (demo-before-fact-noise's world) and on fact_noise=0.5 behaviour_steering=0.7
      # (demo-fact-noise's).
      firm=(--cache-dir "$VARIANTS/fact-noise-behaviour-steering" --build-with "${SHORTER_LM[@]}" fact_noise=0.5 behaviour_steering=0.7)
      before=(--cache-dir "$VARIANTS/before-fact-noise" --build-with "${PREVIOUS[@]}")
      shorter=(--cache-dir "$VARIANTS/before-lm-scale" --build-with "${SHORTER_LM[@]}")
      "$PYTHON" scripts/probe_mcq_picks.py --countries nepal "${shorter[@]}" --out "$RESULTS/demo-picks-nepal.md" > /dev/null
      "$PYTHON" scripts/probe_mcq_picks.py --countries brazil --rejected given "${shorter[@]}" \
        --out "$RESULTS/demo-picks-brazil-given.md" > /dev/null
      "$PYTHON" scripts/probe_mcq_picks.py --countries nepal "${before[@]}" --out "$RESULTS/demo-picks-nepal-before-fact-noise.md" > /dev/null
      "$PYTHON" scripts/probe_mcq_picks.py --countries nepal "${firm[@]}" \
        --out "$RESULTS/demo-picks-nepal-fact-noise-behaviour-steering.md" > /dev/null
      "$PYTHON" scripts/probe_mcq_picks.py --countries brazil --rejected given "${before[@]}" \
        --out "$RESULTS/demo-picks-brazil-given-before-fact-noise.md" > /dev/null
      "$PYTHON" scripts/probe_mcq_picks.py --countries brazil --rejected given "${firm[@]}" \
        --out "$RESULTS/demo-picks-brazil-given-fact-noise-behaviour-steering.md" > /dev/null
      # whose answer each culture's open-answer vector gives, on the default world (docs/results.md, "Open-ended answers"),
      # at the behaviours' 1200 steps, half a culture's default (demo-targets.md holds the misses at the default)
      "$PYTHON" scripts/probe_mcq_picks.py --countries egypt,morocco,uk,spain,brazil,india,nepal --form open_ended \
        --steps 1200 --out "$RESULTS/demo-open-picks.md" > /dev/null
      ;;
    demo-pinned)
      # The plain recipe built from nothing in a fresh cache (with yapo_core's pinned AVX2 kernels).
      status=0
      fresh=$(mktemp -d)
      "$PYTHON" scripts/evaluate_demo_world.py "${OPEN_BEFORE[@]}" --sections behaviours --build-with concept_steering=0 "${BEFORE[@]}" --cache-dir "$fresh/plain" \
        --json "$RESULTS/demo-behaviours-pinned.json" > "$RESULTS/demo-behaviours-pinned.md" || status=$?
      rm -rf "$fresh"
      [ "$status" -le 1 ] || exit "$status"
      ;;
    build-speed)
      "$PYTHON" scripts/benchmark_demo_build.py  # writes $RESULTS/build-speed.md and .json
      ;;
    cpu-kernels)
      "$PYTHON" scripts/benchmark_cpu_kernels.py --out "$RESULTS/cpu-kernels.md" > /dev/null
      ;;
    real-size)
      "$PYTHON" scripts/real_size_run.py  # writes $RESULTS/real-size.md and .json (about 15 GB of memory)
      "$PYTHON" scripts/real_size_run.py --dtype bf16 --out "$RESULTS/real-size-bf16.md"
      ;;
    shared-cpu)
      "$PYTHON" scripts/benchmark_shared_cpu.py  # writes $RESULTS/shared-cpu.md and .json
      ;;
    sharing)
      "$PYTHON" scripts/benchmark_sharing.py
      "$PYTHON" scripts/benchmark_sharing.py --engine simple --out "$RESULTS/sharing-simple.md"
      ;;
    lm-eval)
      "$PYTHON" scripts/lm_eval_check.py
      ;;
    *)
      echo "unknown part '$part'; use one of: ${ALL_PARTS[*]}" >&2
      exit 2
      ;;
  esac
done

if [ "$missed" -ne 0 ]; then
  echo "the demo world missed a target: see $RESULTS/demo-targets.md and the evaluation script's report" >&2
  exit 1
fi
echo "written under $RESULTS/" >&2
