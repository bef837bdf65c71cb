"""The library behind train_mlx.py, one folder per job (README's repository map has the table):

    data/       what a model is trained on: dataset rules, rendering, the trained spans, splits, token files
    train/      the child process that trains: the loop, the loss, checkpoints, the schedule, memory, fuse
    scorecard/  tool-calling scores: the judge, generation, running it in a child, the scorecard itself
    gguf/       llama.cpp's file format: import a GGUF base, export and check GGUF files
    pipeline/   a run of stages: stage directories and run state, the external steps, memory plan per stage
    platform/   speed on the machine at hand: the system BLAS, the CPU attention path, fast tokenizing, forking
    demo/       the SmolLM2 demo's base and summary, and the tiny random model of the tests
    config.py   the typed settings; hub.py  uploading a finished run
"""
