"""Scenes, pictures and questions of the embedded synthetic visual-reasoning suite.

The embedded study stands in for the paper's five benchmarks (paper §2.4; docs/paper.md §6)
with pictures a 2 M-parameter Qwen2.5-VL can see: a 4 x 4 grid of cells (one merged visual token
per cell at 112 px, docs/tiny-model.md §1) holding coloured shapes, or a bar chart of four bars whose
heights are whole cells. Each question template knows how to solve itself, so the same scene
yields the gold answer, the short answer of the base model and every style of long-CoT trace
(``synergy.data.traces``).

Templates are either *perception* (count, colour, position, presence) or *reasoning* (arithmetic
over counts, chart reading, comparisons); multiple choice and free-form integer answers mix in
every benchmark.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

GRID = 4
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "blue": (40, 80, 220),
    "green": (40, 170, 60),
    "yellow": (230, 200, 30),
}
SHAPES = ("circle", "square", "triangle")
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
POINTS = {"circle": 2, "square": 3, "triangle": 1}
KINDS = (*SHAPES, "bar")  # what a cell can show
# The attributes of a cell that a perception-pretrained vision tower writes into its token (synergy/vision_pretrain.py)
CELL_CODE_NAMES = ("empty", "occupied", *(f"colour:{c}" for c in COLOURS), *(f"kind:{k}" for k in KINDS),
                   *(f"pair:{c}:{k}" for c in COLOURS for k in KINDS))
# Where a cell is, added to the code when ``perception_position`` is on (as a ViT's features carry its patch positions)
POSITION_CODE_NAMES = (*(f"row:{r}" for r in range(1, GRID + 1)), *(f"col:{c}" for c in range(1, GRID + 1)))


@dataclass(frozen=True)
class Obj:
    """One shape in a grid cell (rows and columns count from 1, top-left first)."""

    row: int
    col: int
    colour: str
    shape: str

    def describe(self) -> str:
        return f"a {self.colour} {self.shape} in row {self.row}, column {self.col}"


@dataclass(frozen=True)
class Scene:
    """What a picture shows: shapes on the grid (``kind='shapes'``) or a bar chart (``'bars'``)."""

    kind: str
    objects: tuple[Obj, ...] = ()
    bars: tuple[tuple[str, int], ...] = ()  # (colour, height in cells), left to right

    def describe(self) -> str:
        """The scene in words: what a text-only trace reads instead of the picture."""
        if self.kind == "bars":
            parts = [f"a {c} bar of height {h}" for c, h in self.bars]
            return "A bar chart shows, from left to right, " + ", ".join(parts) + "."
        parts = [o.describe() for o in self.objects]
        return "A picture on a 4 by 4 grid shows " + "; ".join(parts) + "."

    def survey(self) -> str:
        """The scene as group counts, colour or shape first (a trace's ``scene_view: counts``): for a
        model that reads a group at a glance but not a cell by its row and column."""
        if self.kind == "bars":
            return self.describe()
        colours = Counter(o.colour for o in self.objects)
        shapes = Counter(o.shape for o in self.objects)
        return ("I count the groups. " + ", ".join(f"{c} shapes: {colours[c]}" for c in COLOURS) + "; "
                + ", ".join(f"{PLURAL[s]}: {shapes[s]}" for s in SHAPES) + ".")

    def key(self) -> str:
        if self.kind == "bars":
            return "bars:" + ",".join(f"{c}{h}" for c, h in self.bars)
        return "shapes:" + ",".join(f"{o.row}{o.col}{o.colour[0]}{o.shape[0]}" for o in sorted(self.objects, key=lambda o: (o.row, o.col)))


@dataclass(frozen=True)
class Question:
    """A question about a scene with its gold answer and the steps that solve it."""

    template: str
    tier: str  # "perception" or "reasoning"
    text: str
    answer: str
    answer_type: str  # "integer" or "multiple_choice"
    options: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()  # reasoning steps, each a sentence, ending with the result
    goal: str = ""  # one short sentence: what must be done (the base model's short reasoning)
    scene: Scene = field(default_factory=lambda: Scene("shapes"))

    def key(self) -> str:
        """Content hash: two questions with the same key are the same question."""
        raw = "|".join([self.template, self.text, ",".join(self.options), self.scene.key()])
        return hashlib.sha1(raw.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- scenes and pictures


def random_shapes_scene(rng: random.Random, min_objects: int = 1, max_objects: int = 9) -> Scene:
    n = rng.randint(min_objects, max_objects)
    cells = rng.sample([(r, c) for r in range(1, GRID + 1) for c in range(1, GRID + 1)], n)
    objs = tuple(Obj(r, c, rng.choice(list(COLOURS)), rng.choice(SHAPES)) for r, c in sorted(cells))
    return Scene("shapes", objects=objs)


def random_bar_scene(rng: random.Random) -> Scene:
    colours = rng.sample(list(COLOURS), 4)
    return Scene("bars", bars=tuple((c, rng.randint(1, GRID)) for c in colours))


def draw_scene(scene: Scene, size: int = 112, rng: random.Random | None = None) -> Image.Image:
    """Draw a scene with PIL; shapes jitter inside their cell when ``rng`` is given."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    cell = size / GRID
    if scene.kind == "bars":
        for i, (colour, h) in enumerate(scene.bars):
            x0, x1 = i * cell + cell * 0.15, (i + 1) * cell - cell * 0.15
            d.rectangle([x0, size - h * cell, x1, size - 1], fill=COLOURS[colour])
        d.line([0, size - 1, size - 1, size - 1], fill=(0, 0, 0))
        return img
    for o in scene.objects:
        m = cell * (0.12 + (rng.random() * 0.1 if rng else 0.05))
        x0, y0 = (o.col - 1) * cell + m, (o.row - 1) * cell + m
        x1, y1 = o.col * cell - m, o.row * cell - m
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            d.ellipse([x0, y0, x1, y1], fill=fill)
        elif o.shape == "square":
            d.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            d.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return img


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- question templates


def _mc(options: list[str], correct: str, rng: random.Random) -> tuple[tuple[str, ...], str]:
    opts = list(options)
    rng.shuffle(opts)
    return tuple(opts), "ABCDEFGH"[opts.index(correct)]


def _count_steps(objs: list[Obj], what: str) -> list[str]:
    if not objs:
        return [f"There are no {what}.", "So the count is 0."]
    listed = "; ".join(o.describe() for o in objs)
    return [f"The {what} are: {listed}.", f"Counting them gives {len(objs)}."]


def q_count_all(s: Scene, rng: random.Random) -> Question:
    objs = list(s.objects)
    return Question("count_all", "perception", "How many shapes are in the image?", str(len(objs)), "integer",
                    steps=tuple(_count_steps(objs, "shapes")), goal="I need to count all the shapes.", scene=s)


def q_count_shape(s: Scene, rng: random.Random) -> Question:
    shape = rng.choice(SHAPES)
    objs = [o for o in s.objects if o.shape == shape]
    return Question("count_shape", "perception", f"How many {PLURAL[shape]} are there?", str(len(objs)), "integer",
                    steps=tuple(_count_steps(objs, PLURAL[shape])), goal=f"I need to count the {PLURAL[shape]}.", scene=s)


def q_count_colour(s: Scene, rng: random.Random) -> Question:
    colour = rng.choice(list(COLOURS))
    objs = [o for o in s.objects if o.colour == colour]
    return Question("count_colour", "perception", f"How many {colour} shapes are there?", str(len(objs)), "integer",
                    steps=tuple(_count_steps(objs, f"{colour} shapes")), goal=f"I need to count the {colour} shapes.", scene=s)


def q_colour_at(s: Scene, rng: random.Random) -> Question:
    o = rng.choice(s.objects)
    options, letter = _mc(list(COLOURS), o.colour, rng)
    return Question("colour_at", "perception", f"What colour is the shape in row {o.row}, column {o.col}?", letter,
                    "multiple_choice", options, steps=(f"In row {o.row}, column {o.col} there is {o.describe()[2:]}.",
                                                       f"Its colour is {o.colour}."),
                    goal="I need to find the colour of that shape.", scene=s)


def q_shape_at(s: Scene, rng: random.Random) -> Question:
    o = rng.choice(s.objects)
    options, letter = _mc(list(SHAPES), o.shape, rng)
    return Question("shape_at", "perception", f"Which shape is in row {o.row}, column {o.col}?", letter,
                    "multiple_choice", options, steps=(f"In row {o.row}, column {o.col} there is {o.describe()[2:]}.",
                                                       f"It is a {o.shape}."),
                    goal="I need to find the shape in that cell.", scene=s)


def q_exists(s: Scene, rng: random.Random) -> Question:
    if rng.random() < 0.5:
        o = rng.choice(s.objects)
        colour, shape = o.colour, o.shape
    else:
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    found = [o for o in s.objects if o.colour == colour and o.shape == shape]
    options, letter = _mc(["yes", "no"], "yes" if found else "no", random.Random(0))  # yes/no keep their order
    step = f"I find {found[0].describe()}." if found else f"No shape is a {colour} {shape}."
    return Question("exists", "perception", f"Is there a {colour} {shape} in the image?", letter, "multiple_choice",
                    options, steps=(step, f"So the answer is {'yes' if found else 'no'}."),
                    goal=f"I need to look for a {colour} {shape}.", scene=s)


def q_sum_colours(s: Scene, rng: random.Random) -> Question:
    a, b = rng.sample(list(COLOURS), 2)
    na = [o for o in s.objects if o.colour == a]
    nb = [o for o in s.objects if o.colour == b]
    steps = _count_steps(na, f"{a} shapes")[:-1] + [f"That is {len(na)} {a} shapes."]
    steps += _count_steps(nb, f"{b} shapes")[:-1] + [f"That is {len(nb)} {b} shapes."]
    steps.append(f"Adding them: {len(na)} + {len(nb)} = {len(na) + len(nb)}.")
    return Question("sum_colours", "reasoning", f"How many shapes are {a} or {b}?", str(len(na) + len(nb)), "integer",
                    steps=tuple(steps), goal=f"I need to add the {a} and the {b} shapes.", scene=s)


def q_difference(s: Scene, rng: random.Random) -> Question | None:
    a, b = rng.sample(SHAPES, 2)
    ca = sum(o.shape == a for o in s.objects)
    cb = sum(o.shape == b for o in s.objects)
    if ca < cb:
        a, b, ca, cb = b, a, cb, ca
    steps = (f"There are {ca} {PLURAL[a]}.", f"There are {cb} {PLURAL[b]}.", f"The difference is {ca} - {cb} = {ca - cb}.")
    return Question("difference", "reasoning", f"How many more {PLURAL[a]} than {PLURAL[b]} are there?", str(ca - cb),
                    "integer", steps=steps, goal=f"I need to subtract the number of {PLURAL[b]} from the {PLURAL[a]}.", scene=s)


def q_points(s: Scene, rng: random.Random) -> Question:
    counts = Counter(o.shape for o in s.objects)
    total = sum(POINTS[sh] * counts[sh] for sh in SHAPES)
    steps = [f"There are {counts[sh]} {PLURAL[sh]}, worth {counts[sh]} x {POINTS[sh]} = {counts[sh] * POINTS[sh]}." for sh in SHAPES]
    steps.append(f"The total score is {' + '.join(str(counts[sh] * POINTS[sh]) for sh in SHAPES)} = {total}.")
    text = "Each circle is worth 2 points, each square 3 points and each triangle 1 point. What is the total score?"
    return Question("points", "reasoning", text, str(total), "integer", steps=tuple(steps),
                    goal="I need to add up the points of all shapes.", scene=s)


def q_more_colour(s: Scene, rng: random.Random) -> Question | None:
    a, b = rng.sample(list(COLOURS), 2)
    ca = sum(o.colour == a for o in s.objects)
    cb = sum(o.colour == b for o in s.objects)
    if ca == cb:
        return None
    options, letter = _mc(["yes", "no"], "yes" if ca > cb else "no", random.Random(0))
    steps = (f"There are {ca} {a} shapes.", f"There are {cb} {b} shapes.",
             f"{ca} is {'more' if ca > cb else 'not more'} than {cb}, so the answer is {'yes' if ca > cb else 'no'}.")
    return Question("more_colour", "reasoning", f"Are there more {a} shapes than {b} shapes?", letter, "multiple_choice",
                    options, steps=steps, goal=f"I need to compare the {a} and the {b} shapes.", scene=s)


def q_most_common_shape(s: Scene, rng: random.Random) -> Question | None:
    counts = Counter(o.shape for o in s.objects)
    ranked = sorted(SHAPES, key=lambda sh: -counts[sh])
    if counts[ranked[0]] == counts[ranked[1]]:
        return None
    options, letter = _mc(list(SHAPES), ranked[0], rng)
    steps = tuple(f"There {'is' if counts[sh] == 1 else 'are'} {counts[sh]} {sh if counts[sh] == 1 else PLURAL[sh]}." for sh in SHAPES) + (f"The most common shape is the {ranked[0]}.",)
    return Question("most_common_shape", "reasoning", "Which shape appears most often?", letter, "multiple_choice", options,
                    steps=steps, goal="I need to find the most common shape.", scene=s)


def q_row_most(s: Scene, rng: random.Random) -> Question | None:
    counts = Counter(o.row for o in s.objects)
    ranked = sorted(range(1, GRID + 1), key=lambda r: -counts[r])
    if counts[ranked[0]] == counts[ranked[1]]:
        return None
    options, letter = _mc([f"row {r}" for r in range(1, GRID + 1)], f"row {ranked[0]}", random.Random(0))
    steps = tuple(f"Row {r} has {counts[r]} {'shape' if counts[r] == 1 else 'shapes'}." for r in range(1, GRID + 1)) + (f"Row {ranked[0]} has the most.",)
    return Question("row_most", "reasoning", "Which row has the most shapes?", letter, "multiple_choice", options,
                    steps=steps, goal="I need to count the shapes in each row.", scene=s)


def q_bar_height(s: Scene, rng: random.Random) -> Question:
    colour, h = rng.choice(s.bars)
    return Question("bar_height", "perception", f"What is the height of the {colour} bar?", str(h), "integer",
                    steps=(f"The {colour} bar reaches height {h}.",), goal=f"I need to read the height of the {colour} bar.", scene=s)


def q_bar_tallest(s: Scene, rng: random.Random) -> Question | None:
    ranked = sorted(s.bars, key=lambda b: -b[1])
    if ranked[0][1] == ranked[1][1]:
        return None
    options, letter = _mc([c for c, _ in s.bars], ranked[0][0], rng)
    steps = tuple(f"The {c} bar has height {h}." for c, h in s.bars) + (f"The tallest is the {ranked[0][0]} bar.",)
    return Question("bar_tallest", "reasoning", "Which bar is the tallest?", letter, "multiple_choice", options,
                    steps=steps, goal="I need to compare the bar heights.", scene=s)


def q_bar_total(s: Scene, rng: random.Random) -> Question:
    total = sum(h for _, h in s.bars)
    steps = tuple(f"The {c} bar has height {h}." for c, h in s.bars) + (
        f"The total is {' + '.join(str(h) for _, h in s.bars)} = {total}.",)
    return Question("bar_total", "reasoning", "What is the total height of all the bars?", str(total), "integer",
                    steps=steps, goal="I need to add the heights of all bars.", scene=s)


def q_bar_range(s: Scene, rng: random.Random) -> Question:
    hs = [h for _, h in s.bars]
    steps = tuple(f"The {c} bar has height {h}." for c, h in s.bars) + (
        f"The tallest is {max(hs)} and the shortest is {min(hs)}, so the difference is {max(hs)} - {min(hs)} = {max(hs) - min(hs)}.",)
    return Question("bar_range", "reasoning", "What is the difference between the tallest and the shortest bar?",
                    str(max(hs) - min(hs)), "integer", steps=steps, goal="I need the tallest minus the shortest bar.", scene=s)


Template = Callable[[Scene, random.Random], Question | None]
TEMPLATES: dict[str, tuple[str, Template]] = {  # name -> (scene kind, question function)
    "count_all": ("shapes", q_count_all),
    "count_shape": ("shapes", q_count_shape),
    "count_colour": ("shapes", q_count_colour),
    "colour_at": ("shapes", q_colour_at),
    "shape_at": ("shapes", q_shape_at),
    "exists": ("shapes", q_exists),
    "sum_colours": ("shapes", q_sum_colours),
    "difference": ("shapes", q_difference),
    "points": ("shapes", q_points),
    "more_colour": ("shapes", q_more_colour),
    "most_common_shape": ("shapes", q_most_common_shape),
    "row_most": ("shapes", q_row_most),
    "bar_height": ("bars", q_bar_height),
    "bar_tallest": ("bars", q_bar_tallest),
    "bar_total": ("bars", q_bar_total),
    "bar_range": ("bars", q_bar_range),
}


def make_question(template: str, rng: random.Random, max_objects: int = 9) -> Question:
    """Draw scenes until the template yields a well-posed question (no ties)."""
    kind, fn = TEMPLATES[template]
    for _ in range(1000):
        scene = random_bar_scene(rng) if kind == "bars" else random_shapes_scene(rng, 1, max_objects)
        q = fn(scene, rng)
        if q is not None:
            return q
    raise RuntimeError(f"template {template!r} found no well-posed question in 1000 scenes")
