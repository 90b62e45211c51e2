"""Tiny models, tokenizers and SAEs built from configs, so every test runs offline in seconds."""

from __future__ import annotations

import os
import random
import string
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads on a shared CPU

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(1)  # tiny models gain nothing from threads, and lose a lot when cores are shared

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPECIALS = ["<pad>", "<bos>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<unk>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
NO_SYSTEM_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tokenizer(chat_template: str | None = CHAT_TEMPLATE):
    """A character-level fast tokenizer (any ASCII text) with chat special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(string.printable)
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<|end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


VOCAB = len(SPECIALS) + len(string.printable)


NEW_FAMILIES = ("gemma3_text", "gemma3", "phi3", "olmo2", "stablelm", "granite", "cohere", "qwen3", "qwen3_moe", "mixtral")
"""Families whose rows came with logit scaling, a multimodal layout or experts; each has the oracle test."""


def tiny_config(family: str):
    import transformers
    from transformers import Gemma2Config, GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig, Qwen2Config

    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.2)
    llama_like = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, **common)
    if family == "llama":
        return LlamaConfig(**llama_like)
    if family == "mistral":
        return MistralConfig(sliding_window=12, **llama_like)
    if family == "qwen2":
        return Qwen2Config(**llama_like)
    if family == "gemma2":
        return Gemma2Config(head_dim=8, sliding_window=12, query_pre_attn_scalar=8, **llama_like)
    if family == "gpt2":
        return GPT2Config(n_embd=32, n_layer=4, n_head=4, n_positions=512, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                             max_position_embeddings=512, **common)
    gemma3_text = dict(head_dim=8, sliding_window=12, query_pre_attn_scalar=8, final_logit_softcapping=5.0)
    extra = {
        "gemma3_text": ("Gemma3TextConfig", gemma3_text),
        "phi3": ("Phi3Config", {}),
        "olmo2": ("Olmo2Config", {}),
        "stablelm": ("StableLmConfig", {}),
        "granite": ("GraniteConfig", dict(logits_scaling=4.0, embedding_multiplier=2.0, residual_multiplier=0.5,
                                          attention_multiplier=0.3)),
        "cohere": ("CohereConfig", dict(logit_scale=0.5)),
        "qwen3": ("Qwen3Config", dict(head_dim=8)),
        "qwen3_moe": ("Qwen3MoeConfig", dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, head_dim=8)),
        "mixtral": ("MixtralConfig", dict(num_local_experts=4, num_experts_per_tok=2)),
    }
    if family in extra:
        name, kwargs = extra[family]
        return getattr(transformers, name)(**llama_like, **kwargs)
    if family == "gemma3":  # the multimodal layout: a (tiny) vision tower beside the language model
        text = transformers.Gemma3TextConfig(**llama_like, **gemma3_text)
        vision = transformers.SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, image_size=28, patch_size=14)
        return transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                         image_token_index=VOCAB - 3, boi_token_index=VOCAB - 2,
                                         eoi_token_index=VOCAB - 1)
    raise ValueError(family)


def make_model(family: str = "llama", seed: int = 0, attn: str = "eager"):
    from transformers import AutoModelForCausalLM

    from yapo_core.models import prepare_model

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family), attn_implementation=attn)
    model.config._name_or_path = f"tiny-{family}"
    return prepare_model(model)


def make_sae(d_in: int = 32, d_sae: int = 128, layer: int = 1, seed: int = 0, position: str = "post"):
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae)
    cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_{position}"
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    sae.eval()
    sae.requires_grad_(False)
    return sae


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(params=["llama", "gemma2", "gpt2"])
def family(request):
    return request.param


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    """The tiny Llama and its tokenizer saved the way transformers saves them."""
    path = tmp_path / "model"
    make_model("llama").save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def sae_dir(tmp_path):
    """A tiny SAE saved the way sae-lens saves SAEs, at blocks.1.hook_resid_post."""
    path = tmp_path / "sae"
    make_sae().save_model(path)
    return path


def consistent_pairs(n: int, seed: int = 0):
    """Pairs whose chosen answer always agrees and whose rejected answer always refuses."""
    from yapo_core.data import PreferencePair

    rng = random.Random(seed)
    things = ["cats", "tea", "rain", "maps", "jazz", "bread", "trains", "snow", "rice", "kites", "boats", "owls"]
    verbs = ["like", "want", "need", "see", "draw", "find"]
    pairs = []
    for _ in range(n):
        thing, verb = rng.choice(things), rng.choice(verbs)
        pairs.append(PreferencePair(f"Do you {verb} {thing}?", f"yes, I {verb} {thing}", f"no, never {thing}"))
    return pairs


def dcl_with_an_answered_localized_prompt(folder) -> Path:
    """A Deep-Culture-Lense file of two MCQ rows: a localized one whose rejected answer is the chosen
    one (the model answers it right), and a non-localized one."""
    import pandas as pd

    question = "Which dish?\nA. Tea\nB. Koshari\nC. Ful\nAnswer with the letter."
    path = Path(folder) / "dcl.csv"
    pd.DataFrame({"country": ["egypt"] * 2, "localization_status": ["localized", "nolocalized"],
                  "prompt-mcq": [question, question + " "], "chosen-mcq": ["B", "B"],
                  "rejected_gemma_mcq": ["B", "A"]}).to_csv(path, index=False)
    return path
