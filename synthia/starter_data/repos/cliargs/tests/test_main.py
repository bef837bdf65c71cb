from cli.main import count, main


def test_main_prints_total(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("one two\n")
    (tmp_path / "b.txt").write_text("three\n")
    assert main([str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--total"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3\ttotal"


def test_count_modes():
    assert (count("a b\nc\n", "words"), count("a b\nc\n", "lines"), count("ab", "chars")) == (3, 2, 2)
