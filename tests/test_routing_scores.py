"""synergy.routing_scores: the fast arm's log-probs of its own samples (the routed arm's confidence signal,
docs/routing.md §1), checked against a plain full forward of the same tokens on the tiny model."""
import io

import polars as pl
import pytest
import torch
from PIL import Image, ImageDraw

from synergy.data.schema import make_row
from synergy.generate.hf import prompt_texts
from synergy.prompts import build_prompt
from synergy.routing_scores import response_logprobs, with_response


def _png() -> bytes:
    im = Image.new("RGB", (56, 56), "white")
    ImageDraw.Draw(im).rectangle((8, 8, 28, 28), fill="red")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


ROWS = [make_row(id="b/1", bench="b", question="How many red squares are there in the image?", answer="1",
                 answer_type="integer", images=[_png()], source="test"),
        make_row(id="b/2", bench="b", question="What is 3 + 4?", answer="7", answer_type="integer", source="test")]
EVALS = pl.DataFrame({"bench": ["b"] * 4, "id": ["b/1", "b/1", "b/2", "b/2"], "sample": [0, 1, 0, 1],
                      "response": ["<think> one red square </think> \\boxed{1}", "", "It is \\boxed{7}.", "seven"]})


def _manual(model, processor, row, response: str) -> float:
    """Mean log-prob of the response tokens from one plain forward over prompt + response (no helper)."""
    prompt = build_prompt(row, True, "after_text")
    enc = processor(text=prompt_texts(processor, [prompt]), images=prompt.images or None, return_tensors="pt")
    resp = processor.tokenizer(response, add_special_tokens=False, return_tensors="pt")["input_ids"]
    p = enc["input_ids"].shape[1]
    ids = torch.cat([enc["input_ids"], resp], dim=1)
    extra = with_response({k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}, p,
                          resp.shape[1], "cpu")
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0].double()
    lp = logits[p - 1:-1].log_softmax(-1).gather(-1, ids[0, p:].unsqueeze(-1))
    return float(lp.mean())


def test_mean_logprob_equals_a_full_forward_of_the_same_tokens_with_and_without_an_image(tiny_loaded):
    model, processor = tiny_loaded
    out = response_logprobs(model, processor, ROWS, EVALS, reasoning=True, image_position="after_text")
    assert out.select("id", "sample").rows() == EVALS.select("id", "sample").rows()
    got = {(r["id"], r["sample"]): r for r in out.iter_rows(named=True)}
    by_id = {r["id"]: r for r in ROWS}
    for (qid, k, text) in EVALS.select("id", "sample", "response").rows():
        if not text:
            assert got[(qid, k)]["mean_logprob"] is None and got[(qid, k)]["tokens"] == 0
            continue
        assert got[(qid, k)]["mean_logprob"] == pytest.approx(_manual(model, processor, by_id[qid], text), abs=1e-5)
        assert got[(qid, k)]["mean_logprob"] < 0 and got[(qid, k)]["tokens"] > 0
    # the image is part of the prompt: the same response scores differently without it
    no_image = [{**ROWS[0], "images": []}, ROWS[1]]
    again = response_logprobs(model, processor, no_image, EVALS.filter(pl.col("id") == "b/1"), reasoning=True,
                              image_position="after_text")
    assert again["mean_logprob"][0] != pytest.approx(got[("b/1", 0)]["mean_logprob"], abs=1e-6)


def test_an_evaluated_question_missing_from_the_benchmark_is_refused(tiny_loaded):
    model, processor = tiny_loaded
    with pytest.raises(ValueError, match="not in the benchmark file"):
        response_logprobs(model, processor, ROWS[:1], EVALS, reasoning=True, image_position="after_text")
