"""Each controlnet_aux-based annotator, loaded from a random-weight checkpoint saved under the real
file name and format, must give exactly what controlnet_aux's own detector gives on that file."""
import dataclasses
import time

import cv2
import numpy as np
import pytest
import torch

import annotators
from annotators import registry
from annotators._aux import aux_module


def _hed():
    return aux_module("hed").ControlNetHED_Apache2().state_dict()


def _pidinet():
    # The published file is a training snapshot with DataParallel names.
    return {"state_dict": {"module." + k: v for k, v in aux_module("pidi").pidinet().state_dict().items()}}


def _mlsd():
    return aux_module("mlsd").MobileV2_MLSD_Large().state_dict()


def _lineart():
    return aux_module("lineart").Generator(3, 1, 3).state_dict()


def _anime():
    import functools

    norm = functools.partial(torch.nn.InstanceNorm2d, affine=False, track_running_stats=False)
    net = aux_module("lineart_anime").UnetGenerator(3, 1, 8, 64, norm_layer=norm, use_dropout=False)
    return {"module." + k: v for k, v in net.state_dict().items()}


# name: (file, state dict maker, controlnet_aux detector factory, extra call kwargs for both)
CASES = {
    "hed": ("ControlNetHED.pth", _hed, lambda d: aux_module("hed").HEDdetector.from_pretrained(d), {}),
    "pidinet": ("table5_pidinet.pth", _pidinet, lambda d: aux_module("pidi").PidiNetDetector.from_pretrained(d), {}),
    "mlsd": ("mlsd_large_512_fp32.pth", _mlsd, lambda d: aux_module("mlsd").MLSDdetector.from_pretrained(d), {}),
    "lineart": ("sk_model.pth", _lineart, lambda d: aux_module("lineart").LineartDetector.from_pretrained(d), {}),
    "lineart_coarse": ("sk_model2.pth", _lineart,
                       lambda d: aux_module("lineart").LineartDetector.from_pretrained(d), {"coarse": True}),
    "lineart_anime": ("netG.pth", _anime,
                      lambda d: aux_module("lineart_anime").LineartAnimeDetector.from_pretrained(d), {}),
}


@pytest.fixture(scope="module")
def weight_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotator-weights")
    torch.manual_seed(0)
    for file, make, _, _ in CASES.values():
        if not (folder / file).exists():
            torch.save(make(), folder / file)
    # LineartDetector.from_pretrained always loads both files.
    return folder


@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_controlnet_aux_on_the_same_weights(name, weight_folder, photo, monkeypatch):
    file, _, detector, kwargs = CASES[name]
    annotators.set_weights_dir(weight_folder)
    try:
        assert annotators.spec(name)["weights_present"]
        assert annotators.spec(name)["weights"][0]["found_at"] == str(weight_folder / file)
        res = 256 if name == "lineart_anime" else 128
        theirs = detector(weight_folder)(photo, detect_resolution=res, image_resolution=res, output_type="np", **kwargs)
        ours = annotators.run(name, photo, detect_resolution=res, size=(theirs.shape[1], theirs.shape[0]))
    finally:
        annotators.set_weights_dir(None)
    assert ours.shape == theirs.shape and ours.dtype == np.uint8
    assert (ours == theirs).all()
    if name != "mlsd":  # random M-LSD weights may find no lines at all
        assert ours.std() > 0


def test_soft_edge_options_reach_the_detector(weight_folder, photo):
    annotators.set_weights_dir(weight_folder)
    try:
        at = {"detect_resolution": 128, "size": (192, 128)}  # the detection size: no resampling after
        plain = annotators.run("hed", photo, **at)
        scribble = annotators.run("hed", photo, scribble=True, **at)
    finally:
        annotators.set_weights_dir(None)
    assert set(np.unique(scribble)) <= {0, 255} and len(np.unique(plain)) > 2


@pytest.mark.parametrize("name", sorted(CASES))
def test_missing_weights_name_the_file_and_its_source(name, empty_weights, photo, monkeypatch):
    # mlsd has a stand-in that needs no weights (OpenCV's LSD, tests/annotators/test_bundled.py):
    # take it away to see the message
    monkeypatch.setitem(registry._REGISTRY, name, dataclasses.replace(registry.get(name), bundled=None))
    file = CASES[name][0]
    assert annotators.spec(name)["weights_present"] is False
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:
        annotators.run(name, photo)
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert file in message and "lllyasviel/Annotators" in message and str(empty_weights) in message
    assert "CNSTUDIO_ANNOTATORS" in message


def test_weights_are_found_through_the_environment_variable(weight_folder, monkeypatch):
    monkeypatch.setenv("CNSTUDIO_ANNOTATORS", str(weight_folder))
    assert annotators.weights_dir() == weight_folder
    assert annotators.spec("hed")["weights_present"]
    monkeypatch.setenv("CNSTUDIO_ANNOTATORS", str(weight_folder / "nowhere"))
    assert annotators.spec("hed")["weights"][0]["found_at"] != str(weight_folder / "ControlNetHED.pth")


def test_weights_are_found_in_the_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--lllyasviel--Annotators" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "ControlNetHED.pth").write_bytes(b"")
    (tmp_path / "hub" / "models--lllyasviel--Annotators" / "refs").mkdir()
    (tmp_path / "hub" / "models--lllyasviel--Annotators" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    annotators.set_weights_dir(tmp_path / "empty")
    try:
        assert annotators.spec("hed")["weights"][0]["found_at"] == str(snapshot / "ControlNetHED.pth")
        assert annotators.spec("pidinet")["weights_present"] is False
    finally:
        annotators.set_weights_dir(None)
