"""The straightforward YaPO/BiPO step, written out independently of yapo_core, as the oracle
that the fast trainer must match: the whole model runs with a hook (dense SAE encode → add →
ReLU → decode → add the reconstruction error), a second unsteered pass gives the reference, and
full-vocabulary logits are computed at every position."""

import torch
import torch.nn.functional as F


def _blocks(model):
    for path in ("model.layers", "transformer.h", "gpt_neox.layers"):
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    raise AssertionError("unknown architecture")


def _answer_logp(model, ids, attn, answer_mask):
    logits = model(input_ids=ids, attention_mask=attn).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    return (logp * answer_mask[:, 1:]).sum(-1)


def oracle_loss(model, sae, kind, layer, v, direction, batch, beta=0.1):
    """Loss of one batch (chosen rows first, then rejected) at multiplier ``direction``."""

    def hook(module, args, out):
        a = direction * v
        if kind == "dense":
            return out + a
        z = sae.encode(out)
        return sae.decode(F.relu(z + a)) + (out - sae.decode(z))

    with torch.no_grad():
        reference = _answer_logp(model, batch.input_ids, batch.attention_mask, batch.answer_mask)
    handle = _blocks(model)[layer].register_forward_hook(hook)
    try:
        steered = _answer_logp(model, batch.input_ids, batch.attention_mask, batch.answer_mask)
    finally:
        handle.remove()
    r = steered - reference
    n = r.shape[0] // 2
    return -F.logsigmoid(direction * beta * (r[:n] - r[n:])).mean()
