import os
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.loading.safe_load import load_state_dict


def _weights():
    g = torch.Generator().manual_seed(0)
    return OrderedDict([("model.diffusion_model.out.2.weight", torch.randn(4, 8, 3, 3, generator=g)),
                        ("model.diffusion_model.out.2.bias", torch.randn(4, generator=g))])


class _Payload:
    """Pickles to a call of `func(*args)`: what a malicious checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("func", ["exec", "os.system"])
def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, func):
    marker = tmp_path / "pwned"
    payload = (_Payload(exec, f"open({str(marker)!r}, 'w').close()") if func == "exec"
               else _Payload(os.system, f"touch '{marker}'"))
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _weights(), "extra": payload}, path)

    with pytest.raises(ValueError) as err:
        load_state_dict(path)
    assert func.split(".")[-1] in str(err.value) and ".safetensors" in str(err.value)
    assert not marker.exists()
    if func == "exec":
        # the file really is malicious: a plain unpickling runs its payload
        torch.load(path, weights_only=False)
        assert marker.exists()


@pytest.fixture
def fake_lightning():
    """A stand-in pytorch_lightning module, only so that the test can *write* a checkpoint that
    references the real class path; it is removed before loading, as on a user's machine."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    mods = {n: types.ModuleType(n) for n in names}
    cls = type("ModelCheckpoint", (), {"__module__": names[-1]})
    mods[names[-1]].ModelCheckpoint = cls
    sys.modules.update(mods)
    try:
        yield cls
    finally:
        for n in names:
            sys.modules.pop(n, None)


def _lightning_checkpoint(cls):
    # the shape of the original SD 1.x .ckpt: training state around the weights
    return {
        "epoch": 6, "global_step": 470000, "pytorch-lightning_version": "1.4.2",
        "callbacks": {cls: {"monitor": None, "best_model_score": np.float64(0.25), "current_score": np.float32(1.5),
                            "dtype": np.dtype("float16"), "kth": np.arange(3)}},
        "state_dict": _weights(),
    }


@pytest.mark.parametrize("legacy", [False, True])
def test_lightning_style_checkpoint_loads(tmp_path, fake_lightning, legacy):
    path = tmp_path / "sd-v1.ckpt"
    torch.save(_lightning_checkpoint(fake_lightning), path, _use_new_zipfile_serialization=not legacy)
    for n in [n for n in sys.modules if n.startswith("pytorch_lightning")]:
        sys.modules.pop(n)
    # without the allow-list torch refuses it, as it refuses the real files
    with pytest.raises(pickle.UnpicklingError, match="ModelCheckpoint"):
        torch.load(path, weights_only=True)

    sd = load_state_dict(path)
    assert list(sd) == list(_weights())
    for k, v in _weights().items():
        assert torch.equal(sd[k], v)


def test_numpy1_pickle_names_are_allowed(tmp_path, fake_lightning):
    """Checkpoints written under numpy 1.x name `numpy.core.multiarray.scalar`; numpy 2 writes
    `numpy._core`. The legacy format is plain pickle text, so the name can be rewritten in place."""
    path = tmp_path / "old.ckpt"
    torch.save(_lightning_checkpoint(fake_lightning), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert b"numpy._core.multiarray" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    sd = load_state_dict(path)
    assert torch.equal(sd["model.diffusion_model.out.2.bias"], _weights()["model.diffusion_model.out.2.bias"])


def test_plain_pth_state_dict_loads(tmp_path):
    path = tmp_path / "control_v11p_sd15_canny.pth"
    torch.save(_weights(), path)
    assert set(load_state_dict(path)) == set(_weights())


def test_safetensors_roundtrip_and_truncation(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(dict(_weights()), str(path))
    assert torch.equal(load_state_dict(path)["model.diffusion_model.out.2.weight"],
                       _weights()["model.diffusion_model.out.2.weight"])

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="model.safetensors.*(corrupt|truncated)"):
        load_state_dict(path)


def test_truncated_and_garbage_ckpt_give_clear_errors(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": _weights()}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.ckpt.*not a readable checkpoint"):
        load_state_dict(path)

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.pth"):
        load_state_dict(junk)


def test_unknown_suffix_missing_file_and_no_tensors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_state_dict(tmp_path / "nope.safetensors")
    odd = tmp_path / "model.onnx"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown checkpoint type"):
        load_state_dict(odd)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(ValueError, match="no tensors"):
        load_state_dict(empty)
