# Stage: the task's real text, downloaded once (verified before any of its code runs) and split
# into disjoint sets.

# The download runs where the workflow was started (a cluster's login node reaches the network).
localrules:
    fetch_source,


rule fetch_source:
    output:
        SDIST,
    params:
        source=config["data"]["source"],
        code=CODE["fetch_source"],
    log:
        f"{LOGS}/fetch_source.log",
    run:
        step("fetch_source", log, out=output[0], **params.source)


if config["task"] in cfg.HUB_TASKS:

    rule prepare_data:
        input:
            manifest=hub_manifest({"repo_type": "dataset", "repo_id": config["data"]["dataset"]["id"],
                                   "revision": config["data"]["dataset"]["revision"]}),
        output:
            expand(SPLIT, split=SPLITS),
            summary=f"{OUT}/data/summary.json",
        params:
            task=config["task"],
            data={k: v for k, v in config["data"].items()
                  if k not in ("source", "dataset", "polarity_threshold")},
            dataset=config["data"]["dataset"],
            cache=HUB_CACHE,
            out_dir=lambda w, output: os.path.dirname(output.summary),
            code=CODE[f"prepare_{config['task']}"],
        log:
            f"{LOGS}/prepare_data.log",
        run:
            step(f"prepare_{params.task}", log, out_dir=params.out_dir, cache=params.cache,
                 source=params.dataset, **params.data)

else:

    rule prepare_data:
        input:
            SDIST,
        output:
            expand(SPLIT, split=SPLITS),
            summary=f"{OUT}/data/summary.json",
        params:
            task=config["task"],
            data={k: v for k, v in config["data"].items() if k != "dataset"},
            out_dir=lambda w, output: os.path.dirname(output.summary),
            code=CODE[f"prepare_{config['task']}"],
        log:
            f"{LOGS}/prepare_data.log",
        run:
            data = dict(params.data)
            step(f"prepare_{params.task}", log, sdist=input[0], out_dir=params.out_dir,
                 sha256=data.pop("source")["sha256"], **data)
