# Hub datasets and models fetched into resources/ (huggingface_hub; token from the environment).
# A `local_path` in the config points a dataset or model at a local copy instead: no download job.
from synergy.data.loaders.hub import model_downloads

MODEL_DOWNLOADS = model_downloads(
    [
        config["base_model"] if config["base_model"]["source"] == "hf" else None,
        config["judge"]["model"] if (config.get("judge") or {}).get("enabled") else None,
        *external_downloads(STUDY),  # outside checkpoints given by hub id (docs/scorecard.md)
    ]
)


localrules:
    download_dataset,
    download_model,


rule download_dataset:
    """A hub dataset repository at its revision into resources/datasets/ (shared by every study)."""
    output:
        directory("resources/datasets/{dataset}"),
    wildcard_constraints:
        dataset=alternatives(DATASET_DOWNLOADS),
    params:
        download=lambda wc: DATASET_DOWNLOADS[wc.dataset],
        repo_type="dataset",
    resources:
        **res("download_dataset"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/_downloads/download_dataset/{dataset}.log",
    script:
        "../scripts/download.py"


rule download_model:
    """A hub model repository at its revision into resources/models/ (shared by every study)."""
    output:
        directory("resources/models/{model}"),
    wildcard_constraints:
        model=alternatives(MODEL_DOWNLOADS),
    params:
        download=lambda wc: MODEL_DOWNLOADS[wc.model],
        repo_type="model",
    resources:
        **res("download_model"),
    conda:
        "../envs/cpu.yaml"
    log:
        "logs/_downloads/download_model/{model}.log",
    script:
        "../scripts/download.py"
