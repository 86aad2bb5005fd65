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
        run_step("tokenizer", dict(corpus=input[0], out=output[0], **params.tokenizer),
                 log=log[0])


def previous_checkpoint(w) -> list[str]:
    tokens = cfg.previous_budget(config, w.model, int(w.tokens))
    return [] if tokens is None else [BASE.format(model=w.model, tokens=tokens)]


rule pretrain:
    input:
        corpus=SPLIT.format(split="pretrain"),
        eval_corpus=SPLIT.format(split="pretrain_eval"),
        tokenizer=TOKENIZER,
        previous=previous_checkpoint,
    output:
        directory(BASE),
    params:
        architecture=lambda w: config["models"][w.model],
        hparams=config["pretraining"],
        code=CODE["pretrain"],
    log:
        f"{LOGS}/pretrain/{{model}}/pt{{tokens}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("pretrain"),
        runtime=runtime("pretrain"),
        gpu=gpus("pretraining"),
    run:
        run_step("pretrain", dict(
            corpus=input.corpus, eval_corpus=input.eval_corpus, tokenizer=input.tokenizer,
            out=output[0], model_name=wildcards.model,
            architecture=dict(params.architecture, max_position_embeddings=2 * params.hparams["seq_len"],
                              tie_word_embeddings=True),
            tokens=int(wildcards.tokens), previous=input.previous[0] if input.previous else None,
            hparams=params.hparams, seed=params.hparams["seed"]), log=log[0], threads=threads)
