"""Does fusing keep what a stage learned? Our precision chain against fusing into a 4-bit base.

    python bench/precision_chain.py [--iters 40] [--learning-rate 2e-5] [--dataset dataset.jsonl]
    python bench/precision_chain.py --smoke     # the tiny random Qwen2, 2 iterations on 60 conversations; seconds

One stage of the real pipeline trains LoRA on a 4-bit copy of a small random-weight Qwen2 model (QLoRA, the
16 GB setting) and fuses into the full-precision model (our chain). The same adapters are then fused the
common way, into the 4-bit model with re-quantization (mlx_lm fuse without --dequantize), and every model's
valid loss is measured on the same split, side by side (the 4-bit copy with the adapters by the stage's training
itself, after its last iteration; keep: last, so those are the adapters fused). "gain kept" = (base loss - model
loss) / (base loss - training model loss): how much of what training achieved survives the fuse.
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthia.demo.tiny_model import build_tiny_model  # noqa: E402

CONFIG = """\
train_bits: 4
grad_checkpoint: false
num_layers: -1
steps_per_eval: 1000
keep: last
lora_parameters: {rank: 8, scale: 20.0, dropout: 0.0}
"""
MODEL = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 512,
         "vocab_size": 2048}
SMOKE_MODEL = {}  # build_tiny_model's defaults: hidden 64, 2 layers, vocab 1024
SMOKE_ITERS, SMOKE_LINES = 2, 60  # the first 60 lines give stage 1 27 training and 1 valid conversation


def run(command):
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def evaluate(models, stage, work):
    """{label: valid loss} of model directories, all in one worker process, on the stage's valid split batched as
    its training evaluated it (the settings of its train_job.json)."""
    from synthia.train.jobs import make_job, write_job

    trained = json.loads((stage / "train_job.json").read_text())
    runs = [{"label": label, "model": str(path), "splits": {"valid": trained["valid"]},
             "num_batches": {"valid": trained["val_batches"]}} for label, path in models.items()]
    write_job(work / "eval_job.json", make_job("evaluate", runs=runs, batch_size=trained["batch_size"],
                                               max_seq_length=trained["max_seq_length"],
                                               loss_chunk_size=trained["loss_chunk_size"],
                                               result=str(work / "eval.json")))
    run([sys.executable, "-m", "synthia.train.worker", "evaluate", str(work / "eval_job.json")])
    return {label: r["valid"]["loss"] for label, r in json.loads((work / "eval.json").read_text()).items()}


def trained_loss(stage):
    """The valid loss of the 4-bit copy with the adapters the stage fuses (keep: last), as its training measured
    it after the last iteration."""
    return json.loads((stage / "train_result.json").read_text())["final_valid_loss"]


def dense_weights(model_dir):
    """{name: float32 weight} of a model directory, 4-bit layers dequantized."""
    import mlx.core as mx

    config = json.loads((Path(model_dir) / "config.json").read_text())
    raw = {}
    for path in Path(model_dir).glob("*.safetensors"):
        raw.update(mx.load(str(path)))
    quantization = config.get("quantization")
    dense = {}
    for name, value in raw.items():
        if not name.endswith(".weight"):
            continue
        stem = name[: -len(".weight")]
        if quantization and f"{stem}.scales" in raw:
            value = mx.dequantize(value, raw[f"{stem}.scales"], raw.get(f"{stem}.biases"),
                                  quantization["group_size"], quantization["bits"])
        dense[name] = value.astype(mx.float32)
    return dense


def update_kept(before, after, reference_before, reference_after):
    """Fraction of the reference update (after - before) that the other chain's update keeps, by projection."""
    import mlx.core as mx

    dot = norm = 0.0
    for name in reference_before:
        reference = reference_after[name] - reference_before[name]
        if mx.abs(reference).max().item() == 0:
            continue  # not a LoRA-trained weight
        dot += (mx.sum((after[name] - before[name]) * reference)).item()
        norm += (mx.sum(reference * reference)).item()
    return dot / norm


def first_lines(path, count, target):
    target.write_text("".join(Path(path).read_text(encoding="utf-8").splitlines(keepends=True)[:count]),
                      encoding="utf-8")
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=2e-5, help="stage 1's real learning rate")
    parser.add_argument("--dataset", default=str(ROOT / "dataset.jsonl"))
    parser.add_argument("--smoke", action="store_true", help=f"the tiny random Qwen2, {SMOKE_ITERS} iterations on "
                        f"the first {SMOKE_LINES} lines of --dataset: the same chain in seconds, figures meaningless")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="precision-chain-") as work:
        if args.smoke:
            args.iters, args.dataset = SMOKE_ITERS, first_lines(args.dataset, SMOKE_LINES, Path(work) / "smoke.jsonl")
        measure(args, Path(work))


def measure(args, work):
    base = build_tiny_model(work / "base", **(SMOKE_MODEL if args.smoke else MODEL))
    (work / "config.yaml").write_text(CONFIG)
    run([sys.executable, "train_mlx.py", "--stage", "1", "--base-model", str(base), "--dataset", str(args.dataset),
         "--config", str(work / "config.yaml"), "--output-dir", str(work / "models"), "--iters", str(args.iters),
         "--learning-rate", str(args.learning_rate)])
    stage = work / "models" / "stage1"
    quantized = stage / "train-base-q4"
    run([sys.executable, "-m", "mlx_lm", "fuse", "--model", str(quantized), "--adapter-path", str(stage),
         "--save-path", str(work / "fused-into-4bit")])
    evaluated = evaluate({"base": base, "base q4": quantized, "fused q4": work / "fused-into-4bit",
                          "fused": work / "models" / "synthia-stage1"}, stage, work)
    losses = {"base, full precision": evaluated["base"], "base, 4-bit training copy": evaluated["base q4"],
              "4-bit copy + adapters (trained)": trained_loss(stage),
              "fused into 4-bit, re-quantized": evaluated["fused q4"],
              "fused into full precision (ours)": evaluated["fused"]}
    print_report(losses, args)
    full_before, full_after = dense_weights(base), dense_weights(work / "models" / "synthia-stage1")
    q_before, q_after = dense_weights(quantized), dense_weights(work / "fused-into-4bit")
    print(f"\nweight update kept (projection on the trained update scale * B @ A): full precision "
          f"{100 * update_kept(full_before, full_after, full_before, full_after):.1f}%, re-quantized 4-bit "
          f"{100 * update_kept(q_before, q_after, full_before, full_after):.1f}%")


def print_report(losses, args):
    print("Precision chain: python bench/precision_chain.py " + f"--iters {args.iters} --learning-rate "
          f"{args.learning_rate:g}" + (" --smoke" if args.smoke else ""))
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}; python "
          f"{platform.python_version()}, mlx {version('mlx')}, mlx-lm {version('mlx-lm')}")
    model = "the tiny random Qwen2 (hidden 64, 2 layers, vocab 1024)" if args.smoke else \
        "random Qwen2, hidden 256, 4 layers, vocab 2048"
    print(f"model: {model}; LoRA rank 8 on every layer, trained on the 4-bit copy (q-bits 4, group 64)\n")
    trained = losses["4-bit copy + adapters (trained)"]
    print(f"{'model':36} {'valid loss':>10} {'vs trained':>11} {'gain kept':>10}")
    for label, loss in losses.items():
        base = losses["base, 4-bit training copy"] if "4-bit" in label else losses["base, full precision"]
        gain = (base - loss) / (base - trained) if base != trained else float("nan")
        relative = (loss - trained) / trained
        print(f"{label:36} {loss:10.4f} {100 * relative:10.2f}% {100 * gain:9.0f}%")


if __name__ == "__main__":
    main()
