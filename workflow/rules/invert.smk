# Stage: the second fine-tuning stage on the second volume of a cell's other pool (inverse
# alignment on negative examples; positive ones in the reverse order; the volume-0 cell is the
# aligned model). One rule per algorithm, each on TRL's own trainer and configured by the
# trainer's own fields (`invert.<algorithm>`): invert_sft, invert_dpo, invert_kto,
# invert_simpo, invert_rloo. Preference algorithms take the stage's pool as chosen and the
# other pool as rejected; online RL is rewarded by the task's scorer (its own step,
# `finetune_online`, so that only its links follow the scorer's code). Along the volumes the
# models form a training chain that starts from the aligned model when the schedule allows it
# (elasticity.chains). A cell with `replay` r > 0 (SFT only) mixes floor(r * N) of the first
# stage's examples into its N (elasticity.finetuning.with_replay).

# The step each algorithm's links run.
FINETUNE_STEP = {a: "finetune_online" if a in grid.REWARDED else "finetune"
                 for a in grid.algorithms(config)}


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
            step_name=FINETUNE_STEP[_algorithm],
            device=config["invert"]["device"],
            gpus=config["invert"]["gpus"],
            seed=lambda w: int(w.seed),
            # App. C.2's mitigation (`mitigation` experiment): the fraction r of aligning
            # examples replayed, and how many the first stage trained on.
            replay=lambda w, input, _a=_algorithm: replay_settings(
                link_cell(w, "invert", _a), input),
            code=CODE[FINETUNE_STEP[_algorithm]],
        log:
            f"{LOGS}/invert/{_algorithm}/{{task}}/{{model}}/pt{{pretrain_tokens}}/{{first}}/{{second}}/seed{{seed}}.log",
        threads: THREADS
        resources:
            mem_mb=mem_mb("finetune"),
            runtime=runtime("finetune"),
            gpu=gpus("invert"),
        run:
            step(params.step_name, log, threads, model=input.start, pool=input.pool,
                 rejected_pool=input.get("rejected"), out=output[0], mem_mb=resources.mem_mb,
                 stage="invert", **{k: params[k] for k in FINETUNE_PARAMS + ["reward"]}, **params.replay)
