"""``lsdebm teach train`` options that do not apply to every teaching model."""
from __future__ import annotations

from lsdebm.cli.main import main
from lsdebm.errors import InputError


def test_iterations_for_the_classifier_are_named_as_ignored(tmp_path, capsys, monkeypatch):
    """``--model classifier --iterations 5`` trained its 30 epochs without a word (the docs said it overrides)."""
    import lsdebm.teach.fid as fid

    def stop(*args, **kwargs):
        raise InputError("stopped before training")

    monkeypatch.setattr(fid, "train_classifier", stop)
    assert main(["teach", "train", "--model", "classifier", "--iterations", "5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert ("warning: --iterations 5: the classifier trains for a fixed number of epochs (30); ignored for it"
            in err) and "stopped before training" in err
    assert main(["teach", "train", "--model", "classifier", "--out", str(tmp_path)]) == 2
    assert "warning" not in capsys.readouterr().err
