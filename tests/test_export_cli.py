"""--export gguf from train_mlx.py: the command it runs, and the files it leaves for LM Studio."""

import train_mlx


def test_dry_run_prints_the_export_command(tiny_model_dir, tmp_path, capsys):
    args = ["--export", "gguf", "--model", str(tiny_model_dir), "--output-dir", str(tmp_path), "--dry-run",
            "--lmstudio-dir", str(tmp_path / "lms")]
    assert train_mlx.main(args) == 0
    out = capsys.readouterr().out
    assert f"would run export: " in out and f"-m synthia.gguf.exporter {tiny_model_dir} {tmp_path / 'gguf'} model" in out
    assert f"--lmstudio-dir {tmp_path / 'lms'}" in out
    assert not (tmp_path / "gguf").exists()


def test_export_writes_gguf_files_and_copies_them_for_lm_studio(tiny_model_dir, tmp_path):
    args = ["--export", "gguf", "--model", str(tiny_model_dir), "--output-dir", str(tmp_path), "--no-verify",
            "--lmstudio-dir", str(tmp_path / "lms")]
    assert train_mlx.main(args) == 0
    written = sorted(p.name for p in (tmp_path / "gguf").glob("*.gguf"))
    assert {"model-f16.gguf", "model-q8_0.gguf"} <= set(written)
    copied = sorted(p.name for p in (tmp_path / "lms" / "synthia" / "model").glob("*.gguf"))
    assert copied == written


def test_export_without_a_model_is_a_clear_error(tmp_path, capsys):
    assert train_mlx.main(["--export", "gguf", "--model", str(tmp_path / "nope"), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot be loaded:\n  {tmp_path / 'nope'}: no such directory\n  Fix: point --model at " in err
