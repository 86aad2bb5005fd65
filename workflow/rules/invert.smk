# Stage: inverse alignment. SFT of an aligned model on N negative examples (N > 0; the N = 0
# cell is the aligned model itself).


rule invert:
    input:
        model=ALIGNED,
        pool=SPLIT.format(split="negative"),
    output:
        directory(INVERTED),
    params:
        n=lambda w: int(w.negative),
        seed=lambda w: int(w.seed),
        hparams=config["invert"],
        code=CODE["finetune"],
    log:
        f"{LOGS}/invert/{{algorithm}}/{{model}}/pt{{tokens}}/pos{{positive}}/neg{{negative}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus("invert"),
    run:
        step("finetune", log, threads, model=input.model, pool=input.pool, out=output[0],
             n=params.n, hparams=params.hparams, seed=params.seed)
