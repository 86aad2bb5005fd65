# Stage: the second fine-tuning stage on the second volume of a cell's other pool (inverse
# alignment on negative examples; positive ones in the reverse order; the volume-0 cell is the
# aligned model). One rule per algorithm, each on TRL's own trainer and configured by the
# trainer's own fields (`invert.<algorithm>`): invert_sft, invert_dpo, invert_kto,
# invert_simpo, invert_rloo. Preference algorithms take the stage's pool as chosen and the
# other pool as rejected; online RL is rewarded by the task's scorer. Along the volumes the
# models form a training chain that starts from the aligned model when the schedule allows it
# (elasticity.chains).

for _algorithm in grid.algorithms(config):

    rule:
        name:
            f"invert_{_algorithm}"
        input:
            unpack(link("invert", _algorithm)),
        output:
            directory(at(grid.INVERTED_MODEL.replace("{algorithm}", _algorithm))),
        params:
            examples=lambda w, _a=_algorithm: link_cell(w, "invert", _a).volume("invert"),
            previous=previous_link_path("invert", _algorithm),
            algorithm=_algorithm,
            trainer=config["invert"][_algorithm],
            reward=reward("invert", _algorithm),
            device=config["invert"]["device"],
            gpus=config["invert"]["gpus"],
            seed=lambda w: int(w.seed),
            code=CODE["finetune"],
        log:
            f"{LOGS}/invert/{_algorithm}/{{task}}/{{model}}/pt{{pretrain_tokens}}/{{first}}/{{second}}/seed{{seed}}.log",
        threads: THREADS
        resources:
            mem_mb=mem_mb("finetune"),
            runtime=runtime("finetune"),
            gpu=gpus("invert"),
        run:
            step("finetune", log, threads, model=input.start, pool=input.pool,
                 rejected_pool=input.get("rejected"), out=output[0], mem_mb=resources.mem_mb,
                 stage="invert", **{k: params[k] for k in FINETUNE_PARAMS + ["reward"]})
