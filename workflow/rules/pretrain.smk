# Stage: the scratch base models (`source: scratch`). A BPE tokenizer, then each model
# pretrained from scratch; a model's budgets form a chain (each checkpoint continues the
# previous one, as TinyLlama's slices do). Released checkpoints come through hub.smk.


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
        directory(BASE_MODEL),
    wildcard_constraints:
        model=names_regex(m for m in config["models"] if not grid.is_pretrained(config, m)),
    params:
        architecture=lambda w: cfg.model_architecture(config, w.model),
        tokens=lambda w: int(w.pretrain_tokens),
        previous=lambda w: (previous_checkpoint(w) or [None])[0],
        seq_len=config["pretraining"]["seq_len"],
        trainer=config["pretraining"]["trainer"],
        device=config["pretraining"]["device"],
        seed=config["pretraining"]["seed"],
        code=CODE["pretrain"],
    log:
        f"{LOGS}/pretrain/{{model}}/pt{{pretrain_tokens}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("pretrain"),
        runtime=runtime("pretrain"),
        gpu=gpus("pretraining"),
    run:
        step("pretrain", log, threads, corpus=input.corpus, eval_corpus=input.eval_corpus,
             tokenizer=input.tokenizer, out=output[0], model_name=wildcards.model,
             architecture=params.architecture, tokens=params.tokens, previous=params.previous,
             seq_len=params.seq_len, trainer=params.trainer, device=params.device,
             seed=params.seed)
