"""The straightforward YaPO/BiPO step, written out independently of yapo_core, as the oracle
that the fast trainer must match: the whole model runs with a hook (dense SAE encode → add →
ReLU → decode → add the reconstruction error), a second unsteered pass gives the reference, and
full-vocabulary logits are computed at every position."""

import torch
import torch.nn.functional as F


def _blocks(model):
    for path in ("model.language_model.layers", "model.layers", "transformer.h", "gpt_neox.layers"):
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    raise AssertionError("unknown architecture")


def _answer_logp(model, ids, attn, answer_mask):
    logits = model(input_ids=ids, attention_mask=attn).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    return (logp * answer_mask[:, 1:]).sum(-1)


def oracle_loss(model, sae, kind, layer, v, direction, batch, beta=0.1, position="post"):
    """Loss of one batch (chosen rows first, then rejected) at multiplier ``direction``, steering
    the output (``post``) or the input (``pre``) of block ``layer``."""

    def steer(h):
        a = direction * v
        if kind == "dense":
            return h + a
        # an SAE trained on TransformerLens's centred residual reads h less its mean over the
        # hidden dimension; the mean, which that residual lacks, is carried through unchanged
        # (TransformerLens centres the writing weights of LayerNorm models only)
        kwargs = sae.cfg.metadata.model_from_pretrained_kwargs or {}
        layer_norm = any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
        read = h - h.mean(-1, keepdim=True) if kwargs.get("center_writing_weights") and layer_norm else h
        # each decode right after its own encode: SAEs that normalise their input keep its scale
        # from one encode to the next decode
        return sae.decode(F.relu(sae.encode(read) + a)) + (h - sae.decode(sae.encode(read)))

    def post_hook(module, args, out):
        return (steer(out[0]),) + tuple(out[1:]) if isinstance(out, tuple) else steer(out)

    def pre_hook(module, args, kwargs):
        if args:
            return (steer(args[0]),) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": steer(kwargs["hidden_states"])}

    with torch.no_grad():
        reference = _answer_logp(model, batch.input_ids, batch.attention_mask, batch.answer_mask)
    block = _blocks(model)[layer]
    if position == "post":
        handle = block.register_forward_hook(post_hook)
    else:
        handle = block.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        steered = _answer_logp(model, batch.input_ids, batch.attention_mask, batch.answer_mask)
    finally:
        handle.remove()
    r = steered - reference
    n = r.shape[0] // 2
    return -F.logsigmoid(direction * beta * (r[:n] - r[n:])).mean()
