"""A batched sampling loop for Qwen2.5-VL that drops finished sequences (the hf backend's decoder).

transformers' ``generate`` keeps every sequence of a batch in the forward pass until the last one
stops, and its ``DynamicCache`` grows the key/value tensors by ``torch.cat`` at every step, copying
the whole cache each time. For the long-CoT arms (completions of 60-320 tokens in one batch of 600)
that copy was half the run time and the finished rows another large share (a profile of a long-CoT
arm's evaluation). This loop:

- writes keys/values into a buffer allocated once for prompt + ``max_new_tokens`` (``_GrowingLayer``:
  a ``DynamicLayer`` whose ``keys``/``values`` are views of the filled part);
- runs the prompt once per prompt and copies its cache to the ``k`` samples
  (``num_return_sequences``) afterwards;
- drops finished rows from the batch (cache, mask, positions) whenever at least
  ``compact_fraction`` of the rows still in the batch have finished, so a few long samples no longer
  carry the whole batch.

Sampling follows transformers' own processors in its own order: minimum new tokens, suppressed
tokens, then temperature, top-k, top-p (``min_tokens_to_keep = 1``), softmax, one multinomial draw;
with top-k set the draw is over the k candidates only (``candidates``: the same distribution).
``tests/test_decode.py`` checks the filtered distribution against transformers' warpers, the greedy
output token for token against ``generate``, and, without top-k and without dropping rows, the
sampled tokens against ``generate``'s for the same seed. Positions are built by the model's own
``_prepare_position_ids_for_generation`` (M-RoPE: 3-D image positions and the per-row
``rope_deltas``), then advance by one per token as ``generate`` does.

Models other than Qwen2-VL / Qwen2.5-VL, or a transformers without the position helper, go through
``model.generate`` unchanged (``supports_fast_decode``). Paper: no counterpart (an implementation
detail of the rollouts of §2.2-2.4); the samples have the distribution ``generate`` would draw.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

FAST_MODEL_TYPES = ("qwen2_5_vl", "qwen2_vl")


class _GrowingLayer(DynamicLayer):
    """A key/value cache layer with its room allocated once; ``keys``/``values`` view the filled part."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._k = self._v = None

    def update(self, key_states, value_states, *args, **kwargs):
        if self._k is None:
            self.lazy_initialization(key_states, value_states)
            b, h, _, d = key_states.shape
            self._k = key_states.new_empty((b, h, self.capacity, d))
            self._v = value_states.new_empty((b, value_states.shape[1], self.capacity, value_states.shape[3]))
        n, q = self.length, key_states.shape[-2]
        if n + q > self.capacity:
            raise RuntimeError(f"key/value cache full: {n} + {q} tokens > capacity {self.capacity}")
        self._k[:, :, n:n + q] = key_states
        self._v[:, :, n:n + q] = value_states
        self.length = n + q
        self.keys, self.values = self._k[:, :, :self.length], self._v[:, :, :self.length]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def select_rows(self, rows: torch.Tensor | None, repeats: int = 1) -> None:
        """Keep ``rows`` of the batch (a copy; all when None), each repeated ``repeats`` times."""
        if self._k is None:
            return
        k, v = self._k, self._v
        if rows is not None:
            k, v = k.index_select(0, rows), v.index_select(0, rows)
        if repeats > 1:
            k, v = k.repeat_interleave(repeats, 0), v.repeat_interleave(repeats, 0)
        self._k, self._v = k, v
        self.keys, self.values = k[:, :, :self.length], v[:, :, :self.length]


def _new_cache(model, capacity: int) -> Cache:
    cfg = model.config
    text = cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg
    return Cache(layers=[_GrowingLayer(capacity) for _ in range(text.num_hidden_layers)])


def supports_fast_decode(model) -> bool:
    """Whether ``decode`` runs its own loop for ``model`` (else it calls ``model.generate``)."""
    return (getattr(getattr(model, "config", None), "model_type", None) in FAST_MODEL_TYPES
            and hasattr(model, "_prepare_position_ids_for_generation")
            and hasattr(getattr(model, "model", None), "rope_deltas"))


def filter_logits(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """transformers' temperature, top-k and top-p warpers (in that order, keeping at least one token)."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        remove = _outside_nucleus(sorted_logits, top_p)
        scores = scores.masked_fill(remove.scatter(1, sorted_idx, remove), float("-inf"))
    return scores


def _outside_nucleus(ascending: torch.Tensor, top_p: float) -> torch.Tensor:
    """transformers' top-p cut on logits sorted ascending: True where the token is dropped (never the top one)."""
    remove = ascending.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
    remove[..., -1:] = False
    return remove


def candidates(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The sampling distribution of ``filter_logits(...).softmax(-1)``, over the top-k candidates when that is exact.

    Returns ``(probs, ids)``: ``probs[r, j]`` is the probability of token ``ids[r, j]``; ``ids`` is None when
    ``probs`` spans the vocabulary. With top-k set and no tie at the k-th score (transformers keeps every
    tied token), top-p over the k candidates equals top-p over the masked vocabulary, and the draw costs
    k instead of the vocabulary's size.
    """
    if top_k and top_k < scores.shape[-1]:
        if temperature != 1.0:
            scores = scores / temperature
        vals, ids = torch.topk(scores, top_k)  # descending
        if not bool(((scores >= vals[:, -1:]).sum(-1) > top_k).any()):
            if top_p < 1.0:
                asc = vals.flip(-1)
                vals = asc.masked_fill(_outside_nucleus(asc, top_p), float("-inf")).flip(-1)
            return vals.softmax(-1), ids
        return filter_logits(scores, 1.0, top_k, top_p).softmax(-1), None
    return filter_logits(scores, temperature, top_k, top_p).softmax(-1), None


def _all_done(mine: bool, synced: bool, device) -> bool:
    """Whether this process's rows (and, when ``synced``, every process's rows) have all stopped."""
    if not synced:
        return mine
    import torch.distributed as dist

    flag = torch.tensor([1 if mine else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


@torch.no_grad()
def decode(model, *, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
           eos_token_id, pad_token_id: int, num_return_sequences: int = 1, do_sample: bool = True,
           temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, min_new_tokens: int | None = None,
           suppress_tokens=None, repetition_penalty: float = 1.0, return_dict_in_generate: bool = False,
           compact_fraction: float = 0.25, synced_gpus: bool = False, **model_inputs) -> torch.Tensor:
    """Sample like ``model.generate(...)`` and return the same tensor: ``[B * k, prompt + new]``.

    Row ``s`` holds prompt ``s // k``'s ids, then its sample's tokens up to and including the stop
    token, then ``pad_token_id``. Sampling draws from the global torch RNG (the caller seeds it).
    ``synced_gpus`` (transformers' flag, for ZeRO-3: every forward is a collective that gathers the
    layers' weights): every process keeps running forwards until all processes' rows have stopped,
    so all of them make the same number of forward calls; the extra steps write only padding.
    """
    gen_kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                      eos_token_id=eos_token_id, pad_token_id=pad_token_id, num_return_sequences=num_return_sequences,
                      do_sample=do_sample, min_new_tokens=min_new_tokens, suppress_tokens=suppress_tokens,
                      repetition_penalty=repetition_penalty, return_dict_in_generate=return_dict_in_generate,
                      **model_inputs)
    if synced_gpus:
        gen_kwargs["synced_gpus"] = True
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
    if not supports_fast_decode(model) or repetition_penalty != 1.0 or return_dict_in_generate:
        return model.generate(**gen_kwargs)

    device = input_ids.device
    k = int(num_return_sequences)
    B, L = input_ids.shape
    eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=device)
    suppress = torch.tensor(sorted(set(int(t) for t in suppress_tokens or ())), dtype=torch.long, device=device)
    min_new = int(min_new_tokens or 0)

    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, **model_inputs}
    position_ids = model._prepare_position_ids_for_generation(input_ids, kwargs)
    if position_ids.dim() == 2:  # text-only positions (no M-RoPE rows)
        position_ids = position_ids[None]
    deltas = model.model.rope_deltas
    if deltas is None:
        deltas = torch.zeros(B, 1, dtype=torch.long, device=device)
    cache = _new_cache(model, L + max_new_tokens)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=cache, use_cache=True, logits_to_keep=1, **model_inputs)
    logits = out.logits[:, -1, :].float()

    # one row per sample from here on; `rows` maps batch rows to output rows
    if k > 1:
        for layer in cache.layers:
            layer.select_rows(None, repeats=k)
        logits = logits.repeat_interleave(k, 0)
    N = B * k
    mask = torch.zeros((N, L + max_new_tokens), dtype=attention_mask.dtype, device=device)
    mask[:, :L] = attention_mask.repeat_interleave(k, 0)
    next_pos = attention_mask.long().sum(-1).repeat_interleave(k, 0) + deltas.reshape(-1).to(device).repeat_interleave(k, 0)
    rows = torch.arange(N, device=device)
    new = torch.full((N, max_new_tokens), pad_token_id, dtype=input_ids.dtype, device=device)
    done = torch.zeros(N, dtype=torch.bool, device=device)  # in batch order
    steps = 0
    for t in range(max_new_tokens):
        if t < min_new:
            logits[:, eos] = float("-inf")
        if suppress.numel():
            logits[:, suppress] = float("-inf")
        if do_sample:
            probs, ids = candidates(logits, float(temperature), int(top_k), float(top_p))
            token = torch.multinomial(probs, 1)
            token = (ids.gather(1, token) if ids is not None else token).squeeze(1)
        else:
            token = logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, pad_token_id), token)
        new[rows, t] = token
        done = done | torch.isin(token, eos)
        steps = t + 1
        if _all_done(bool(done.all()), synced_gpus, device) or t + 1 == max_new_tokens:
            break
        n_done = int(done.sum())
        if n_done and n_done < done.numel() and n_done >= compact_fraction * done.numel():
            keep = (~done).nonzero().squeeze(1)
            for layer in cache.layers:
                layer.select_rows(keep)
            rows, token, done = rows[keep], token[keep], done[keep]
            mask, next_pos = mask[keep], next_pos[keep]
        mask[:, L + t] = 1
        out = model(input_ids=token[:, None], attention_mask=mask[:, :L + t + 1],
                    position_ids=(next_pos + t)[None, :, None], past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1, :].float()
    model.model.rope_deltas = None  # a later forward must not reuse this batch's deltas
    return torch.cat([input_ids.repeat_interleave(k, 0), new[:, :steps]], dim=1)
