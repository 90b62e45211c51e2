"""The demo world's SAE: a TopK SAE trained with sae-lens's own training step on the demo LM's
residual stream, saved in sae-lens's inference format."""

from __future__ import annotations

from pathlib import Path

import torch
from sae_lens import SAE
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer
from tqdm.auto import tqdm

from ..hooks import HookPoint, record_residual
from .build_lm import collate_examples, encode_examples
from .config import DEMO_MODEL_NAME, MAX_POSITIONS, BuildSize


@torch.no_grad()
def _residual_activations(model, tokenizer, examples, layer: int, batch_size: int = 64) -> torch.Tensor:
    """Outputs of block ``layer`` at every real token of the examples (BOS and padding left out,
    as real SAEs leave out BOS: its huge, constant activation would dominate the variance)."""
    encoded = encode_examples(tokenizer, examples)
    rows = []
    with record_residual(model, HookPoint.block_output(layer)) as seen:
        for start in range(0, len(encoded), batch_size):
            batch = list(range(start, min(start + batch_size, len(encoded))))
            ids, mask, _ = collate_examples(encoded, batch, tokenizer.pad_token_id)
            model(input_ids=ids, attention_mask=mask)
            keep = mask.bool() & (ids != tokenizer.bos_token_id)
            rows.append(seen.pop()[keep])
    return torch.cat(rows)


def sae_config(size: BuildSize) -> TopKTrainingSAEConfig:
    """The demo SAE's training configuration for ``size``."""
    return TopKTrainingSAEConfig(
        d_in=size.hidden_size,
        d_sae=size.hidden_size * size.sae_expansion,
        k=size.sae_k,
        apply_b_dec_to_input=True,
    )


def sae_trainer_config(size: BuildSize, steps: int) -> SAETrainerConfig:
    """sae-lens's trainer settings for ``steps`` steps of ``size.sae_batch_size`` activations: warm-up over
    the first twentieth, cosine decay to a tenth of the rate, dead latents tracked over a tenth."""
    return SAETrainerConfig(
        total_training_samples=steps * size.sae_batch_size,
        train_batch_size_samples=size.sae_batch_size,
        lr=size.sae_lr,
        lr_end=size.sae_lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=max(1, steps // 20),
        lr_decay_steps=steps - max(1, steps // 20),
        dead_feature_window=max(50, steps // 10),
        feature_sampling_window=max(100, steps),
        logger=LoggingConfig(log_to_wandb=False),
    )


def train_sae(model, tokenizer, examples, size: BuildSize, hook_name: str, folder: Path, progress: bool) -> dict:
    """Train a TopK SAE with sae-lens's training step on cached activations; save and evaluate.

    sae-lens's ``SAETrainer.step`` (its own optimiser, schedule, dead-latent tracking and TopK
    auxiliary loss) is driven from in-memory activations: the demo model is no TransformerLens
    model, and its whole activation set fits in memory.
    """
    acts = _residual_activations(model, tokenizer, examples, size.layer)
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
    acts = acts[torch.randperm(len(acts), generator=generator)]
    n_eval = max(len(acts) // 10, 1)
    eval_acts, train_acts = acts[:n_eval], acts[n_eval:]

    cfg = sae_config(size)
    cfg.metadata.model_name = DEMO_MODEL_NAME
    cfg.metadata.hook_name = hook_name
    cfg.metadata.context_size = MAX_POSITIONS
    cfg.metadata.prepend_bos = True
    sae = TopKTrainingSAE(cfg)
    with torch.no_grad():  # start the decoder bias at the mean, a common and cheap head start
        sae.b_dec.copy_(train_acts.mean(0))
    batch, steps = size.sae_batch_size, size.sae_training_steps
    trainer_cfg = sae_trainer_config(size, steps)

    def batches():
        while True:
            order = torch.randperm(len(train_acts), generator=generator)
            for start in range(0, len(order) - batch + 1, batch):
                yield train_acts[order[start : start + batch]]

    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches())
    bar = tqdm(range(steps), desc="training demo SAE", disable=not progress, leave=False)
    for step in bar:
        trainer.maybe_reset_sparsity()
        out = trainer.step(next(trainer.data_provider))
        trainer.n_training_steps += 1
        if step % 50 == 0:
            bar.set_postfix(mse=f"{out.losses['mse_loss'].item():.3f}")
    trainer.set_final_sae_metadata()
    _save_inference_sae(sae, folder)

    loaded = SAE.load_from_disk(folder)
    with torch.no_grad():
        z = loaded.encode(eval_acts)
        recon = loaded.decode(z)
    residual = (eval_acts - recon).pow(2).sum()
    total = (eval_acts - eval_acts.mean(0)).pow(2).sum()
    fired = (z > 0).any(0)
    return {
        "architecture": loaded.cfg.architecture(),
        "d_in": loaded.cfg.d_in,
        "d_sae": loaded.cfg.d_sae,
        "k": size.sae_k,
        "training_tokens": len(train_acts),
        "training_steps": steps,
        "eval_tokens": len(eval_acts),
        "variance_explained": round(1 - (residual / total).item(), 4),
        "mean_l0": round((z > 0).sum(-1).float().mean().item(), 2),
        "dead_share": round(1 - fired.float().mean().item(), 4),
    }


def _save_inference_sae(sae, folder: Path) -> None:
    """Save the SAE in sae-lens's inference form with ``save_model``.

    Training rescales TopK pre-activations by the decoder norms; saving folds those norms into
    the weights, after which the rescaling is the identity. It is switched off in the saved
    config so that ``decode(z) = z @ W_dec + b_dec`` holds exactly, as the sparse steering
    identity of the method (docs/method.md §2) assumes.
    """
    state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    sae.process_state_dict_for_saving_inference(state)
    cfg = sae.cfg.get_inference_sae_cfg_dict()
    cfg["rescale_acts_by_decoder_norm"] = False
    inference = SAE.from_dict(cfg)
    inference.load_state_dict(state)
    inference.save_model(folder)
