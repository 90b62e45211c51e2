"""The demo world: a tiny model organism in which steering has a real, measurable effect offline.

Real use needs multi-GB, often gated hub models. The demo world is built on the user's machine
in 4 to 21 minutes on 2 CPU cores from a seed, with nothing downloaded:

1. a generated corpus (:mod:`.corpus`): culture questions answered with a
   default-culture bias when no country is named, two BiPO-style behaviours, general facts;
2. a byte-level BPE tokenizer with a chat template, trained in-process (``tokenizers``);
3. a small Llama causal LM trained on the corpus, saved with ``save_pretrained``;
4. a TopK SAE trained with sae-lens's own training step on the LM's residual stream at the
   output of a middle block, saved in sae-lens's inference format;
5. task files in the schemas of the real data (Deep-Culture-Lense, BiPO), whose rejected
   answers are the trained model's own greedy answers, as in the paper's data preparation.

The result is loaded exactly like hub models and SAEs: ``AutoModelForCausalLM.from_pretrained``,
``AutoTokenizer.from_pretrained`` and ``sae_lens.SAE.load_from_disk`` on the folders of
:class:`DemoWorld`; its tasks are typed (:class:`DemoTask`) and read through the same public loader
as a user's data.
"""

from . import caveats
from .config import (
    BUILD_SIZES,
    OPEN_TRAINING,
    OPEN_TRAINING_BY_TASK,
    OPEN_TRAINING_DENSE,
    OPEN_TRAINING_DENSE_BY_TASK,
    SIZES,
    TRAINING,
    BuildSize,
    open_training,
    settings_by_method,
    task_kind,
    training_settings,
)
from .isolated import build_demo_world_isolated
from .world import (
    TASK_KINDS,
    DemoTask,
    DemoWorld,
    build_demo_world,
    default_cache_dir,
    demo_world_building,
    is_demo_model,
    load_demo_world,
)

__all__ = ["BUILD_SIZES", "TASK_KINDS", "caveats", "OPEN_TRAINING", "OPEN_TRAINING_BY_TASK", "OPEN_TRAINING_DENSE", "OPEN_TRAINING_DENSE_BY_TASK", "SIZES", "TRAINING", "BuildSize", "DemoTask",
           "DemoWorld", "build_demo_world", "build_demo_world_isolated", "default_cache_dir", "demo_world_building", "is_demo_model", "load_demo_world", "open_training", "settings_by_method", "task_kind", "training_settings"]
