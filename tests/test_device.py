"""One device resolver: every entry point accepts and refuses the same device strings."""
import pytest
import torch

from lsdebm.errors import InputError
from lsdebm.runtime.device import DEVICE_CHOICES, model_device, resolve_device
from lsdebm.runtime.distributed import pick_device

REFUSED = ["gpu", "mps", "cuda:x", "cuda:-1", "cpu:0", "", "auto:1"]
HAS_CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("text", ["auto", "cpu", "CPU", " cpu ", None, torch.device("cpu")])
def test_cpu_and_auto_resolve(text):
    dev = resolve_device(text)
    assert dev.type == ("cuda" if HAS_CUDA and str(text).strip().lower() in ("auto", "none") else "cpu")


@pytest.mark.parametrize("text", REFUSED)
def test_bad_strings_are_refused_with_the_allowed_values(text):
    with pytest.raises(InputError) as first:
        resolve_device(text)
    message = str(first.value)
    assert "\n" not in message and all(choice in message for choice in DEVICE_CHOICES)
    with pytest.raises(InputError) as training:  # the training path uses the same rule and the same words
        pick_device(text)
    assert str(training.value) == message


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the request is valid")
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_one_line_error_everywhere(text):
    from lsdebm.bench.runner import run_benchmarks

    for resolve in (resolve_device, pick_device, lambda d: run_benchmarks("tiny", d, 1, True, ("energy",))):
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve(text)


@pytest.mark.parametrize("command", [
    ["evaluate", "--out", "OUT", "--n", "1", "--device", "gpu"],
    ["reconstruct", "IN", "-o", "OUT/x.nii", "--device", "gpu"],
    ["bench", "--preset", "tiny", "--only", "energy", "--device", "gpu"],
])
def test_cli_commands_refuse_a_bad_device_the_same_way(command, tmp_path, capsys, tiny_pair):
    import numpy as np

    from lsdebm.cli.main import main
    from lsdebm.data.nifti import write_volume

    lq = write_volume(tmp_path / "lq.nii.gz", tiny_pair[1], np.diag([8.0, 8.0, 8.0, 1.0]))
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("IN", str(lq)) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "'gpu' is not allowed" in err and len(err.splitlines()) == 1


def test_run_panel_choices_all_resolve():
    """The plugin's device combo offers auto, cpu and cuda: each is a value the one resolver knows."""
    for text in ("auto", "cpu") + (("cuda",) if HAS_CUDA else ()):
        assert isinstance(resolve_device(text), torch.device)


def test_model_device():
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters
