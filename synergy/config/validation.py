"""Validation of a whole study config: the schema (config/schema.yaml), then the checks a schema cannot express.

Every problem is collected and named by its key (``unknown config key 'difficulty.num_sample'``,
``missing required config key 'difficulty.thresholds'``) before anything is built.
"""

from __future__ import annotations

from collections.abc import Mapping

from synergy.config.base import ConfigError
from synergy.config.overrides import suggest
from synergy.config.training import ARM_KINDS, DEFAULTS_SECTION, ArmSpec, arm_parents, merge_arm_dicts, resolve_settings


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_errors(cfg: Mapping, schema: Mapping, prefix: tuple = ()) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for err in sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))):
        where = _key_path([*prefix, *err.absolute_path])
        if err.validator == "additionalProperties":
            known = set(err.schema.get("properties", {}))
            for extra in sorted(set(err.instance) - known):
                messages.append(f"unknown config key {(where + '.' if where else '') + extra!r}"
                                + suggest(extra, known))
        elif err.validator == "required":
            name = err.message.split("'")[1]
            messages.append(f"missing required config key {(where + '.' if where else '') + name!r}")
        else:
            messages.append(f"config key {where or '<top>'!r}: {err.message}")
    return messages


def _semantic_errors(cfg: Mapping) -> list[str]:
    from synergy.data.synthetic import CELL_CODE_NAMES, POSITION_CODE_NAMES, TEMPLATES

    errors = []
    if (cfg.get("evaluation") or {}).get("per_job") == "arm" and (cfg.get("sharding") or {}).get("evaluation", 1) > 1:
        errors.append("config keys 'evaluation.per_job: arm' and 'sharding.evaluation' > 1 exclude each other: one job "
                      "per arm evaluates every benchmark whole; use per_job: benchmark to shard")
    for section in ("benchmarks", "train_sets"):
        names = [s["name"] for s in cfg.get(section, [])]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            errors.append(f"config key {section!r}: duplicate names {dupes}")
        for i, spec in enumerate(cfg.get(section, [])):
            where = f"{section}[{i}] ({spec['name']})"
            from synergy.data.loaders.registry import loader_errors, synthetic_errors

            errors += synthetic_errors(section, i, spec) if spec.get("loader") == "synthetic" else \
                loader_errors(section, i, spec)
            if spec.get("loader") == "synthetic":
                if "num_questions" not in spec:
                    errors.append(f"missing required config key '{section}[{i}].num_questions' for loader synthetic")
                tpls = spec.get("templates", "all")
                if tpls == "all" and section == "benchmarks":
                    errors.append(f"config key '{section}[{i}].templates': a benchmark must list its templates")
                elif isinstance(tpls, Mapping):
                    unknown = sorted(set(tpls) - set(TEMPLATES))
                    if unknown:
                        errors.append(f"config key '{section}[{i}].templates': unknown templates {unknown} in {where}; "
                                      f"known: {sorted(TEMPLATES)}")
    uses_synth = any(s.get("loader") == "synthetic" for s in [*cfg.get("benchmarks", []), *cfg.get("train_sets", [])])
    if uses_synth and "synthetic" not in cfg:
        errors.append("missing required config key 'synthetic' (a benchmark or train set uses loader: synthetic)")
    bm = cfg.get("base_model", {})
    if bm.get("source") == "tiny":
        for key in ("tiny", "pretrain"):
            if key not in bm:
                errors.append(f"missing required config key 'base_model.{key}' for source: tiny")
        pre = bm.get("pretrain", {})
        if pre and pre.get("train_set") not in [s["name"] for s in cfg.get("train_sets", [])]:
            errors.append(f"config key 'base_model.pretrain.train_set': {pre.get('train_set')!r} is not a train set")
        if pre and pre.get("curriculum_steps", 0) > pre.get("steps", 0):
            errors.append("config key 'base_model.pretrain.curriculum_steps': exceeds base_model.pretrain.steps")
        unknown = sorted(set(pre.get("curriculum_templates", [])) - set(TEMPLATES)) if pre else []
        if unknown:
            errors.append(f"config key 'base_model.pretrain.curriculum_templates': unknown templates {unknown}")
        hidden = (bm.get("tiny") or {}).get("hidden_size", 0)
        code = len(CELL_CODE_NAMES) + (len(POSITION_CODE_NAMES) if pre and pre.get("perception_position") else 0)
        if pre and pre.get("perception_steps", 0) and hidden < code:
            errors.append(f"config key 'base_model.pretrain.perception_steps': the cell code needs "
                          f"{code} directions, base_model.tiny.hidden_size is {hidden}")
        size = (cfg.get("synthetic") or {}).get("image_size")
        if pre and pre.get("perception_steps", 0) and size != 112:
            errors.append(f"config key 'base_model.pretrain.perception_steps': the cell code is one token per 28-px cell "
                          f"of a 4 x 4 grid, so synthetic.image_size must be 112 (it is {size})")
    judge = cfg.get("judge") or {}
    if judge.get("enabled") and not (judge["model"].get("path") or judge["model"].get("local_path")):
        errors.append("missing required config key 'judge.model.path' (hub id) or 'judge.model.local_path' "
                      "for judge.enabled: true")
    if bm.get("source") == "hf" and not (bm.get("path") or bm.get("local_path")):
        errors.append("missing required config key 'base_model.path' (hub id) or 'base_model.local_path' "
                      "(a model folder) for source: hf")
    return errors


def _arm_errors(cfg: Mapping, schema: Mapping | None = None) -> list[str]:
    errors: list[str] = []
    user_arms = cfg.get("arms", [])
    try:
        merges = merge_arm_dicts(cfg)
    except ConfigError as exc:
        return [str(exc)]
    arms = [*user_arms, *merges]
    names = [a["name"] for a in arms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        errors.append(f"config key 'arms': duplicate names {dupes} (merge arms are named merge-<method>-<ratio>)")
    train_sets = {t["name"]: t for t in cfg.get("train_sets", [])}
    kinds = {a["name"]: a["kind"] for a in arms}
    for i, a in enumerate(user_arms):
        if a["kind"] == "base":
            continue
        if a["kind"] == "routed":
            errors += _routed_errors(cfg, i, a, kinds)
            continue
        parent = a.get("init", "base")
        if parent not in names:
            errors.append(f"config key 'arms[{i}].init': arm {a['name']!r} starts from {parent!r}, which is not an arm")
        if a.get("train_set") not in train_sets:
            errors.append(f"config key 'arms[{i}].train_set': {a.get('train_set')!r} is not a train set")
        if a["kind"] == "mixing":
            if not a.get("source"):
                errors.append(f"missing required config key 'arms[{i}].source' (the RL arm a mixing arm samples from)")
            elif a["source"] not in names:
                errors.append(f"config key 'arms[{i}].source': {a['source']!r} is not an arm")
            if "mixing" not in cfg:
                errors.append(f"missing required config key 'mixing' (arm {a['name']!r} is of kind mixing)")
        elif a.get("source"):
            errors.append(f"config key 'arms[{i}].source': only kind mixing takes a source (arm {a['name']!r})")
        section = DEFAULTS_SECTION.get(a["kind"])
        if schema is not None and section in schema.get("$defs", {}):  # types of the overrides
            kind_schema = {"$defs": schema["$defs"], "$ref": f"#/$defs/{section}"}
            errors += [e for e in _schema_errors(dict(a.get("settings") or {}), kind_schema, ("arms", i, "settings"))
                       if not e.startswith("unknown config key")]  # unknown keys: named by resolve_settings below
        try:
            settings = resolve_settings(cfg, ArmSpec.from_dict(a, f"arms[{i}]"), ARM_KINDS[a["kind"]])
        except (ConfigError, TypeError) as exc:
            errors.append(f"config key 'arms[{i}]' ({a['name']}): {exc}")
            continue
        if a.get("init_epoch") is not None:
            errors += _init_epoch_errors(cfg, user_arms, i, a)
        ts = train_sets.get(a.get("train_set"), {})
        needs_traces = a["kind"] == "mixing" or getattr(settings, "hybrid", "none") != "none"
        if needs_traces and ts.get("style") == "none":
            errors.append(f"config key 'arms[{i}].train_set': arm {a['name']!r} needs external traces, but train set "
                          f"{ts['name']!r} has style none (no responses)")
    m = cfg.get("merging")
    if m:
        for key in ("sft_arm", "rl_arm", "base_arm"):
            if key in m or key != "base_arm":
                arm = m.get(key, "base")
                if arm not in names:
                    errors.append(f"config key 'merging.{key}': {arm!r} is not an arm (a study without it sets "
                                  "`merging: null`)")
                elif kinds[arm] == "merge":
                    errors.append(f"config key 'merging.{key}': {arm!r} is itself a merge")
    parents = {a["name"]: arm_parents(a, cfg) for a in arms}
    reported: set[frozenset] = set()
    for start in parents:  # every chain of parents must end at a base arm
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for p in parents.get(node, []):
                if p == start or p in path:
                    cyc = path[path.index(p):] if p in path else path
                    if frozenset(cyc) not in reported:
                        reported.add(frozenset(cyc))
                        errors.append(f"config key 'arms': the arms {cyc} form a cycle of parents")
                elif p in parents:
                    stack.append((p, path + [p]))
    for i, table in enumerate(cfg.get("tables") or []):
        missing = [a for a in table["arms"] if a not in names]
        if missing:
            errors.append(f"config key 'tables[{i}]' ({table['name']}): arms {missing} are not declared in 'arms'")
    return errors


def _routed_errors(cfg, i: int, a, kinds: Mapping[str, str]) -> list[str]:
    """A routed arm names two different arms with their own models (``fast``, ``slow``) and no training of its own."""
    errors = []
    for key in ("fast", "slow"):
        arm = a.get(key)
        if not arm:
            errors.append(f"missing required config key 'arms[{i}].{key}' (arm {a['name']!r} is of kind routed)")
        elif arm not in kinds:
            errors.append(f"config key 'arms[{i}].{key}': {arm!r} is not an arm")
        elif kinds[arm] == "routed":
            errors.append(f"config key 'arms[{i}].{key}': {arm!r} is itself a routed arm")
    if a.get("fast") and a.get("fast") == a.get("slow"):
        errors.append(f"config key 'arms[{i}]': a routed arm needs two different arms, got {a['fast']!r} twice")
    for key in ("train_set", "source", "init_epoch"):
        if a.get(key) is not None:
            errors.append(f"config key 'arms[{i}].{key}': a routed arm trains nothing (arm {a['name']!r})")
    try:
        settings = resolve_settings(cfg, ArmSpec.from_dict(a, f"arms[{i}]"), ARM_KINDS["routed"])
    except (ConfigError, TypeError) as exc:
        return errors + [f"config key 'arms[{i}]' ({a['name']}): {exc}"]
    if settings.tune_set is not None and not errors:
        errors += _tune_set_errors(cfg, i, a, settings.tune_set)
    return errors


def _tune_set_errors(cfg, i: int, a, tune_set: str) -> list[str]:
    """A routed arm's tune set is a train set that neither parent, nor anything they are built from, trained on."""
    where = f"config key 'arms[{i}].settings.tune_set' (arm {a['name']!r})"
    if tune_set not in {t["name"] for t in cfg.get("train_sets") or []}:
        return [f"{where}: {tune_set!r} is not a train set of this study"]
    arms = {x["name"]: x for x in [*cfg.get("arms", []), *merge_arm_dicts(cfg)]}
    seen, todo = set(), [a["fast"], a["slow"]]
    while todo:
        name = todo.pop()
        if name in seen or name not in arms:
            continue
        seen.add(name)
        if arms[name].get("train_set") == tune_set:
            return [f"{where}: arm {name!r}, which the routed arm builds on, trains on {tune_set!r}: the threshold "
                    f"must be chosen on questions neither parent has seen"]
        todo += arm_parents(arms[name], cfg)
    return []


def _init_epoch_errors(cfg, user_arms, i: int, a) -> list[str]:
    """An arm with ``init_epoch: k`` starts from epoch k of an SFT / mixing arm that keeps it (``keep_epochs``)."""
    parent = next((p for p in user_arms if p["name"] == a.get("init", "base")), None)
    where = f"config key 'arms[{i}].init_epoch'"
    if parent is None or parent["kind"] not in ("sft", "mixing"):
        return [f"{where}: arm {a['name']!r} starts from an epoch of {a.get('init', 'base')!r}, which is not an SFT "
                "or mixing arm (only those save per-epoch models)"]
    try:
        keep = resolve_settings(cfg, ArmSpec.from_dict(parent, "init arm"), ARM_KINDS[parent["kind"]]).keep_epochs
    except (ConfigError, TypeError):
        return []  # the parent's own errors are reported for it
    if a["init_epoch"] not in keep:
        return [f"{where}: arm {a['name']!r} starts from epoch {a['init_epoch']} of {parent['name']!r}, which keeps "
                f"only epochs {list(keep)}: add it to that arm's settings.keep_epochs"]
    return []

