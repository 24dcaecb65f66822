"""The `jaxrnn` command line: train, sample, help, errors and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxrnn._cli import build_parser, main
from jaxrnn.train._data import default_corpus

TINY = ["--hidden", "16", "--layers", "2", "--seq-len", "16", "--batch", "4", "--lr", "1e-2"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    """The text of test_train.py (same shapes, so the compiled step is shared)."""
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(default_corpus(max_chars=6_000).text, encoding="utf-8")
    return str(path)


def _subparser(name):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


@pytest.mark.parametrize("command", ["train", "sample"])
def test_help_documents_every_option_and_its_default(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    options = [a for a in _subparser(command)._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= (16 if command == "train" else 5)
    for a in options:
        assert a.option_strings[0] in out
        assert "(default:" in a.help or "(required)" in a.help, a.option_strings
    if command == "train":
        for default in ("256", "64", "32", "2000", "0.003", "hand"):
            assert f"(default: {default})" in " ".join(out.split())


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "sample" in out and "demo" in out


def _bad(tmp_path, kind):
    path = tmp_path / "bad.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 40)
    elif kind == "short":
        path.write_text("print('hello')\n" * 20)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("empty", "the file is empty"),
        ("binary", "binary file"),
        ("short", "too short: 300 characters, need at least"),
    ],
)
def test_bad_text_exits_2_with_a_clear_message(tmp_path, capsys, kind, message):
    out = tmp_path / "run"
    code = main(["train", "--text", str(_bad(tmp_path, kind)), "--out", str(out), *TINY])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxrnn train: error: --text ") or "too short" in err
    assert message in err
    assert not out.exists()  # nothing written for a run that cannot start


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "0"], "--hidden must be a positive integer"),
        (["--lr", "-1"], "--lr must be a finite number > 0"),
        (["--resume"], "--resume needs --out"),
        (["--resume", "--out", "/nonexistent/run"], "no run at /nonexistent/run"),
    ],
)
def test_bad_options_exit_2(capsys, args, message):
    assert main(["train", *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_train_extra_is_a_clear_error(text, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optax", None)  # as if optax were not installed
    assert main(["train", "--text", text, "--out", str(tmp_path / "r"), *TINY]) == 1
    assert "pip install 'jaxrnn[train]'" in capsys.readouterr().err


def test_train_then_sample(text, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--text", text, "--out", str(run), *TINY, "--steps", "12"]
    assert main([*args, "--eval-every", "5", "--sample-every", "6", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "step 12/12" in out and "validation" in out and "unigram entropy" in out
    assert err == ""  # --quiet (and not a terminal): no progress bar
    for name in (
        "config.json",
        "vocab.json",
        "checkpoint.npz",
        "metrics.csv",
        "loss.png",
        "samples.txt",
    ):
        assert (run / name).is_file(), name
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"

    # --resume takes the saved options; a longer --steps continues the run
    assert main(["train", "--out", str(run), "--resume", "--steps", "15", "--quiet"]) == 0
    assert "step 15/15" in capsys.readouterr().out
    assert main(["train", "--out", str(run), "--resume", "--hidden", "8"]) == 2
    assert "--hidden 16 -> 8" in capsys.readouterr().err

    texts = []
    for seed in (1, 1, 2):
        assert (
            main(
                [
                    "sample",
                    "--run",
                    str(run),
                    "--length",
                    "60",
                    "--seed",
                    str(seed),
                    "--prime",
                    "def ",
                ]
            )
            == 0
        )
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] != texts[2] and texts[0].startswith("def ")
    assert len(texts[0]) == 4 + 60 + 1
    assert main(["sample", "--run", str(run), "--prime", "\u2603"]) == 2
    assert "not in the vocabulary" in capsys.readouterr().err
    assert main(["sample", "--run", str(tmp_path)]) == 2
    assert "not a jaxrnn run directory" in capsys.readouterr().err


def test_progress_bar_when_asked(text, capsys):
    from jaxrnn.train import TrainConfig, train

    cfg = TrainConfig(
        text=text,
        hidden=16,
        layers=2,
        seq_len=16,
        batch=4,
        lr=1e-2,
        steps=3,
        sample_every=0,
        val_chars=1024,
    )
    train(cfg, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "bpc" in err and "tok/s" in err


def test_ctrl_c_checkpoints_and_exits_130(text, tmp_path):
    """SIGINT mid-run: checkpoint written, exit code 130; --resume continues from it."""
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "jaxrnn",
        "train",
        "--text",
        text,
        "--out",
        str(run),
        *TINY,
        "--steps",
        "1000000",
        "--checkpoint-every",
        "10",
        "--sample-every",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoint.npz").exists():  # the first periodic checkpoint
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; checkpoint saved" in err and "--resume" in err
    assert "%|" not in err  # stderr is not a terminal: no progress bar
    with np.load(run / "checkpoint.npz") as z:
        step = int(z["step"])
    rows = np.genfromtxt(run / "metrics.csv", delimiter=",", names=True)
    assert step >= 10 and rows["step"][-1] == step  # the checkpoint is at the last step done
    assert f"step {step}/1000000" in out
    assert main(["train", "--out", str(run), "--resume", "--steps", str(step + 3), "--quiet"]) == 0
    rows = np.genfromtxt(run / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(rows["step"], np.arange(1, step + 4))
    assert not [name for name in os.listdir(run) if ".tmp-" in name]


def test_check_subcommand_passes_and_fails(capsys):
    """`jaxrnn check` mounts the oracle: 0 for a right implementation, 1 for a wrong one."""
    ok = ["check", "jaxrnn.reference:rnn_forward", "jaxrnn.reference:rnn_backward"]
    assert main([*ok, "--max-examples", "3"]) == 0
    assert "PASS" in capsys.readouterr().out
    bad = ["check", "wrong_impls:db_mean_forward", "wrong_impls:db_mean_backward"]
    assert main([*bad, "--max-examples", "5"]) == 1
    assert "db is wrong" in capsys.readouterr().out


def test_demo_help_shows_each_default_once(capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 8)" in out and "(default: 8) (default: 8)" not in out
    assert out.count("(default:") == 5  # --N, --T, --D, --H, --seed
