"""Perception pretraining of the tiny model's vision tower: each cell's token carries what the cell shows.

The paper's base model has a pretrained vision encoder whose features already name colours and shapes
(Qwen2.5-VL-7B, paper §2.1); its SFT and RL stages freeze it (paper §3). The tiny model of the embedded study
has no such encoder to start from. With a random frozen tower the language model can still count the colour a
question names *before* the image (the image tokens are conditioned on it), but a count written *after* the
image, as every step of a long-CoT trace is, must find the colour in random features, which a 2 M-parameter model
does not learn from a few hundred traces (docs/embedded-study.md §4).

This module gives the tower what a pretrained encoder has, and nothing more: before the language model is
pretrained, the tower and merger regress each image's merged cell tokens onto a fixed code of that cell's
content (a sum of fixed orthonormal directions: occupied or empty, its colour, its kind — circle, square,
triangle or bar — and the colour-and-kind pair), on freshly drawn random scenes (never the study's questions).
Then the tower is frozen as before. Questions, answers, counts and positions are not in the code; the language
model still has to learn to read, count and reason. docs/embedded-study.md §6 has the measurements.

Deviation (documented there): the paper's encoder was pretrained on natural images with text supervision; this
one is fit to a designed code of the synthetic world in a few hundred steps.
"""

from __future__ import annotations

import logging
import math
import random
import time

import torch

from synergy.data.synthetic import CELL_CODE_NAMES, COLOURS, POSITION_CODE_NAMES, GRID, KINDS, Scene, draw_scene, random_bar_scene, random_shapes_scene

log = logging.getLogger("synergy.vision_pretrain")


def code_names(position: bool) -> tuple[str, ...]:
    """The attributes the cell code has a direction for: content, plus the cell's row and column if ``position``."""
    return CELL_CODE_NAMES + (POSITION_CODE_NAMES if position else ())


def _directions(dim: int, seed: int, position: bool = False) -> dict[str, torch.Tensor]:
    """Fixed orthonormal directions, one per cell attribute (seeded, so a rebuild gives the same code)."""
    names = code_names(position)
    if len(names) > dim:
        raise ValueError(f"the cell code needs {len(names)} directions; the vision output has only {dim}")
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, len(names), generator=g))
    return {n: q[:, i] for i, n in enumerate(names)}


def cell_contents(scene: Scene) -> list[tuple[str, str] | None]:
    """What each of the GRID x GRID cells shows, row-major from the top left: (colour, kind) or None."""
    cells: list[tuple[str, str] | None] = [None] * (GRID * GRID)
    if scene.kind == "bars":
        for col, (colour, height) in enumerate(scene.bars):
            for row in range(GRID - height, GRID):
                cells[row * GRID + col] = (colour, "bar")
    else:
        for o in scene.objects:
            cells[(o.row - 1) * GRID + (o.col - 1)] = (o.colour, o.shape)
    return cells


def cell_code(scene: Scene, directions: dict[str, torch.Tensor]) -> torch.Tensor:
    """The target tokens of one scene, shape (GRID * GRID, dim)."""
    rows = []
    position = "row:1" in directions
    for i, cell in enumerate(cell_contents(scene)):
        if cell is None:
            tok = directions["empty"]
        else:
            colour, kind = cell
            tok = (directions["occupied"] + directions[f"colour:{colour}"] + directions[f"kind:{kind}"]
                   + directions[f"pair:{colour}:{kind}"])
        if position:
            tok = tok + directions[f"row:{i // GRID + 1}"] + directions[f"col:{i % GRID + 1}"]
        rows.append(tok)
    return torch.stack(rows)


def _random_scene(rng: random.Random, max_objects: int, bar_share: float) -> Scene:
    if rng.random() < bar_share:
        return random_bar_scene(rng)
    return random_shapes_scene(rng, 0 if rng.random() < 0.05 else 1, max_objects)


def _features(model, processor, images) -> torch.Tensor:
    """The merged visual tokens of ``images`` (the language model's image inputs), shape (n, GRID*GRID, dim)."""
    enc = processor.image_processor(images=images, return_tensors="pt")
    out = model.model.get_image_features(enc["pixel_values"], enc["image_grid_thw"])
    feats = out.pooler_output
    if any(f.shape[0] != GRID * GRID for f in feats):
        raise ValueError(f"expected {GRID * GRID} visual tokens per image (one per grid cell), got "
                         f"{[f.shape[0] for f in feats]}: the image size must be {GRID} cells of 28 px")
    return torch.stack(list(feats))


def perception_pretrain(model, processor, *, steps: int, batch_size: int, learning_rate: float, seed: int,
                        max_objects: int = 9, bar_share: float = 0.25, image_size: int = 112,
                        position: bool = False) -> dict:
    """Fit the vision tower and merger of ``model`` to the cell code; returns the loss and the cell-readout accuracy.

    The rest of the model is untouched; the caller freezes the tower afterwards (``synergy.models.freeze_vision``).
    """
    from synergy.models import vision_parameters

    t0 = time.monotonic()
    rng = random.Random(seed)
    directions = _directions(model.config.text_config.hidden_size, seed, position)
    params = vision_parameters(model)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    losses: list[float] = []
    for step in range(steps):
        scenes = [_random_scene(rng, max_objects, bar_share) for _ in range(batch_size)]
        images = [draw_scene(s, image_size, rng) for s in scenes]
        target = torch.stack([cell_code(s, directions) for s in scenes])
        loss = torch.nn.functional.mse_loss(_features(model, processor, images), target) * target.shape[-1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for group in opt.param_groups:  # cosine decay to 10 % over the run
            group["lr"] = learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * (step + 1) / steps)))
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log.info("perception step %d/%d: loss %.4f (%.2f s/step)", step + 1, steps,
                     sum(losses[-50:]) / len(losses[-50:]), (time.monotonic() - t0) / (step + 1))
    stats = {"perception_steps": steps, "perception_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
             **readout_accuracy(model, processor, directions, seed + 1, max_objects, bar_share, image_size),
             "perception_seconds": time.monotonic() - t0}
    log.info("perception pretraining done: %s", stats)
    return stats


@torch.no_grad()
def readout_accuracy(model, processor, directions, seed: int, max_objects: int, bar_share: float,
                     image_size: int, n: int = 128) -> dict:
    """On fresh scenes: the share of cells whose colour and kind are read right by the nearest direction."""
    rng = random.Random(seed)
    scenes = [_random_scene(rng, max_objects, bar_share) for _ in range(n)]
    feats = _features(model, processor, [draw_scene(s, image_size, rng) for s in scenes])
    colour_dirs = torch.stack([directions[f"colour:{c}"] for c in COLOURS])
    kind_dirs = torch.stack([directions[f"kind:{k}"] for k in KINDS])
    right = total = occupied_right = position_right = 0
    position = "row:1" in directions
    if position:
        row_dirs = torch.stack([directions[f"row:{r}"] for r in range(1, GRID + 1)])
        col_dirs = torch.stack([directions[f"col:{c}"] for c in range(1, GRID + 1)])
    for s, f in zip(scenes, feats):
        for i, (cell, tok) in enumerate(zip(cell_contents(s), f)):
            if position:
                position_right += (int((row_dirs @ tok).argmax()), int((col_dirs @ tok).argmax())) == divmod(i, GRID)
            occ = bool((tok @ directions["occupied"]) > (tok @ directions["empty"]))
            occupied_right += occ == (cell is not None)
            if cell is not None:
                total += 1
                colour = list(COLOURS)[int((colour_dirs @ tok).argmax())]
                kind = KINDS[int((kind_dirs @ tok).argmax())]
                right += (colour, kind) == cell
    out = {"perception_cell_accuracy": right / max(1, total), "perception_occupancy_accuracy": occupied_right / (n * GRID * GRID)}
    if position:
        out["perception_position_accuracy"] = position_right / (n * GRID * GRID)
    return out
