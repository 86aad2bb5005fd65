# Stage: the real text of the micro-world, downloaded once and split into disjoint sets.

# The download runs where the workflow was started (a cluster's login node reaches the network).
localrules:
    fetch_source,



rule fetch_source:
    output:
        SDIST,
    params:
        source=SOURCE,
        code=CODE["data"],
    log:
        f"{LOGS}/fetch_source.log",
    run:
        step("fetch_source", log, out=output[0], **params.source)


rule prepare_data:
    input:
        SDIST,
    output:
        expand(SPLIT, split=["pretrain", "pretrain_eval", "positive", "negative", "prompts"]),
        summary=f"{OUT}/data/summary.json",
    params:
        data={k: v for k, v in config["data"].items() if k != "source"},
        out_dir=lambda w, output: os.path.dirname(output.summary),
        code=CODE["data"],
    log:
        f"{LOGS}/prepare_data.log",
    run:
        step("prepare_data", log, sdist=input[0], out_dir=params.out_dir, **params.data)
