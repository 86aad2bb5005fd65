# Stage: the base models. A BPE tokenizer, then each model pretrained from scratch; a model's
# budgets form a chain (each checkpoint continues the previous one, as TinyLlama's slices do).


rule tokenizer:
    input:
        SPLIT.format(split="pretrain"),
    output:
        directory(TOKENIZER),
    params:
        tokenizer=config["tokenizer"],
        code=CODE["tokenizer"],
    log:
        f"{LOGS}/tokenizer.log",
    run:
        step("tokenizer", log, corpus=input[0], out=output[0], **params.tokenizer)


rule pretrain:
    input:
        corpus=SPLIT.format(split="pretrain"),
        eval_corpus=SPLIT.format(split="pretrain_eval"),
        tokenizer=TOKENIZER,
        previous=previous_checkpoint,
    output:
        directory(BASE),
    params:
        architecture=architecture,
        tokens=lambda w: int(w.tokens),
        previous=lambda w: (previous_checkpoint(w) or [None])[0],
        hparams=config["pretraining"],
        seed=config["pretraining"]["seed"],
        code=CODE["pretrain"],
    log:
        f"{LOGS}/pretrain/{{model}}/pt{{tokens}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("pretrain"),
        runtime=runtime("pretrain"),
        gpu=gpus("pretraining"),
    run:
        step("pretrain", log, threads, corpus=input.corpus, eval_corpus=input.eval_corpus,
             tokenizer=input.tokenizer, out=output[0], model_name=wildcards.model,
             architecture=params.architecture, tokens=params.tokens, previous=params.previous,
             hparams=params.hparams, seed=params.seed)
