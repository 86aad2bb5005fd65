# Stage: alignment. SFT of a base checkpoint on P positive examples (one model per P and seed,
# shared by all of that P's inverse cells).


rule align:
    input:
        model=BASE,
        pool=SPLIT.format(split="positive"),
    output:
        directory(ALIGNED),
    params:
        n=lambda w: int(w.positive),
        seed=lambda w: int(w.seed),
        hparams=config["align"],
        code=CODE["finetune"],
    log:
        f"{LOGS}/align/{{algorithm}}/{{model}}/pt{{tokens}}/pos{{positive}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus("align"),
    run:
        step("finetune", log, threads, model=input.model, pool=input.pool, out=output[0],
             n=params.n, hparams=params.hparams, seed=params.seed)
