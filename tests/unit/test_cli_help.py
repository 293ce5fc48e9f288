"""The help a new user reads first agrees with the README and states defaults and ranges."""

from __future__ import annotations

from click.testing import CliRunner

from kdgan.cli import cli


def _help(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # unwrapped


def test_top_level_help_starts_where_the_readme_starts():
    assert "kdgan train --preset demo-kd --outdir runs/demo" in _help()


def test_train_help_shows_defaults_the_real_resolution_range_and_every_name():
    text = _help("train")
    assert "a power of two from 8 to 1024 for StyleGAN2" in text and "32 or 64 for BigGAN" in text
    for name in ("clip-random", "clip-tiny-random", "inception", "obama", "grumpy-cat", "panda",
                 "animalface-cat", "animalface-dog", "lfw-faces", "cifar100"):
        assert name in text, name
    assert "[default: (the preset's, else 125000)]" in text
    assert "[default: (the preset's, else lfw-faces)]" in text


def test_compress_help_explains_students_and_marks_required_options():
    text = _help("compress")
    assert text.count("[required unless --report]") == 3
    assert "biggan: a BigGAN student (for a BigGAN teacher, the same as `same`)" in text
    assert "auto: the widest of 1, 1/2, 1/4" in text
    assert "--report-ref TEXT" in text and "--report-ref-split TEXT" in text
