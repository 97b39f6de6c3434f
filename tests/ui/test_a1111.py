"""AUTOMATIC1111's REST routes, called through a real HTTP client against the studio started as
launch.py starts it (with --auth), with payloads shaped as the ControlNet extension documents them."""
import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

import annotators
from engine import read_recipe

SIZE = 64


def b64(picture: np.ndarray, prefix: bool = False) -> str:
    out = io.BytesIO()
    Image.fromarray(picture).save(out, format="PNG")
    text = base64.b64encode(out.getvalue()).decode()
    return "data:image/png;base64," + text if prefix else text


def picture(b64_text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64_text))).convert("RGB"))


def scribble() -> np.ndarray:
    m = np.zeros((SIZE, SIZE, 3), np.uint8)
    m[12:52, 28:34] = 255
    return m


def photo() -> np.ndarray:
    p = np.full((SIZE, SIZE, 3), 230, np.uint8)
    p[16:48, 16:48] = (200, 30, 30)
    return p


@pytest.fixture(scope="module")
def call(a1111):
    def call(method, path, **kw):
        return requests.request(method, a1111["url"] + path, auth=a1111["auth"], timeout=300, **kw)
    return call


def two_units() -> list:
    return [{"enabled": True, "module": "none", "model": "demo:scribble", "image": b64(scribble()), "weight": 0.8,
             "guidance_start": 0.0, "guidance_end": 0.7, "control_mode": "Balanced", "resize_mode": "Crop and Resize"},
            {"enabled": True, "module": "canny", "model": "demo:canny", "image": {"image": b64(photo(), prefix=True)},
             "weight": 0.5, "guidance_start": 0.2, "guidance_end": 1.0, "threshold_a": 50, "threshold_b": 150,
             "control_mode": 1, "resize_mode": 0, "processor_res": 64}]


def txt2img(**extra) -> dict:
    return {"prompt": "a red circle on a blue background", "steps": 4, "seed": 7, "width": SIZE, "height": SIZE,
            "sampler_name": "Euler a", **extra}


def test_every_route_wants_the_credentials(a1111):
    for method, path in [("GET", "/sdapi/v1/sd-models"), ("POST", "/sdapi/v1/txt2img"), ("GET", "/sdapi/v1/progress"),
                         ("GET", "/controlnet/model_list"), ("POST", "/controlnet/detect")]:
        r = requests.request(method, a1111["url"] + path, json={}, timeout=30)
        assert r.status_code == 401 and "--auth" in r.json()["errors"], path
        wrong = requests.request(method, a1111["url"] + path, json={}, timeout=30, auth=("artist", "nope"))
        assert wrong.status_code == 401


def test_the_listings_name_things_as_a1111_does(call):
    titles = [m["title"] for m in call("GET", "/sdapi/v1/sd-models").json()]
    assert any(t.startswith("demo [") for t in titles) and any(t.startswith("tiny [") for t in titles)
    assert "Euler a" in [s["name"] for s in call("GET", "/sdapi/v1/samplers").json()]
    assert call("GET", "/controlnet/version").json() == {"version": 2}
    models = call("GET", "/controlnet/model_list").json()["model_list"]
    assert any(m.startswith("demo:scribble [") and m.endswith("]") and len(m.split("[")[1]) == 9 for m in models)
    legacy = call("GET", "/controlnet/module_list").json()
    alias = call("GET", "/controlnet/module_list", params={"alias_names": "true"}).json()
    assert "lineart_standard" in legacy["module_list"] and "canny" in legacy["module_list"]
    assert "lineart_standard (from white bg & black line)" in alias["module_list"]
    sliders = alias["module_detail"]["canny"]["sliders"]
    assert [s["value"] for s in sliders] == [512, 100, 200]
    types = call("GET", "/controlnet/control_types").json()["control_types"]
    assert "canny" in types["Canny"]["module_list"] and types["Canny"]["default_model"].startswith("demo:canny [")
    assert call("GET", "/controlnet/settings").json()["control_net_unit_count"] >= 2
    assert call("GET", "/sdapi/v1/scripts").json()["txt2img"] == ["controlnet"]
    loras = call("GET", "/sdapi/v1/loras").json()
    assert [(lora["name"], lora["alias"]) for lora in loras] == [("tiny_ink", "tiny_ink")]
    assert loras[0]["path"].endswith("tiny_ink.safetensors") and isinstance(loras[0]["metadata"], dict)


def test_txt2img_reads_lora_tags_in_the_prompt(call):
    def run(prompt):
        r = call("POST", "/sdapi/v1/txt2img", json=txt2img(prompt=prompt, steps=2, seed=5,
                                                           override_settings={"sd_model_checkpoint": "tiny"}))
        assert r.status_code == 200, r.text
        return r.json()
    plain, tagged = run("a red star"), run("a red star <lora:tiny_ink:0.9> <lora:not_here:1>")
    assert np.abs(picture(plain["images"][0]).astype(int) - picture(tagged["images"][0])).max() > 8
    info = json.loads(tagged["info"])
    assert any("'not_here'" in w for w in info["warnings"]), info["warnings"]
    assert "<lora:tiny_ink:0.9>" in info["infotexts"][0]
    assert read_recipe(base64.b64decode(tagged["images"][0])).prompt.endswith("<lora:not_here:1>")


def test_txt2img_with_two_units_carries_both_in_the_recipe(call):
    r = call("POST", "/sdapi/v1/txt2img", json=txt2img(alwayson_scripts={"ControlNet": {"args": two_units()}}))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert len(answer["images"]) == 3        # the picture, then one detected map per unit
    request = read_recipe(base64.b64decode(answer["images"][0]))
    assert [(u.model, u.weight, u.start, u.end, u.mode) for u in request.units] == [
        ("demo:scribble", 0.8, 0.0, 0.7, "balanced"), ("demo:canny", 0.5, 0.2, 1.0, "prompt")]
    assert request.units[1].annotator == "canny"
    assert request.units[1].annotator_params["low_threshold"] == 50
    assert request.seed == 7 and request.sampler == "euler_a"
    expected = annotators.run("canny", photo(), low_threshold=50, high_threshold=150, detect_resolution=64)
    assert np.array_equal(picture(answer["images"][2]), expected)
    info = json.loads(answer["info"])
    assert info["all_seeds"] == [7] and 'ControlNet 1: "Module: canny' in info["infotexts"][0]
    plain = call("POST", "/sdapi/v1/txt2img", json=txt2img(alwayson_scripts={"controlnet": {"args": []}})).json()
    assert len(plain["images"]) == 1
    assert read_recipe(base64.b64decode(plain["images"][0])).units == ()
    diff = np.abs(picture(plain["images"][0]).astype(int) - picture(answer["images"][0]).astype(int)).mean()
    assert diff > 2.0


def test_n_iter_runs_batches_on_consecutive_seeds_and_other_scripts_are_ignored_with_a_warning(call):
    units = [dict(two_units()[0], save_detected_map=False)]
    r = call("POST", "/sdapi/v1/txt2img", json=txt2img(
        seed=100, batch_size=2, n_iter=2, tiling=True,
        alwayson_scripts={"controlnet": {"args": units}, "ADetailer": {"args": [False]}}))
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["all_seeds"] == [100, 101, 102, 103] and len(r.json()["images"]) == 4
    assert [read_recipe(base64.b64decode(i), this_image=True).seed for i in r.json()["images"]] == [100, 101, 102, 103]
    text = " ".join(info["warnings"])
    assert "ADetailer" in text and "tiling" in text          # what the studio lacks is said, not dropped silently


def test_img2img_with_an_init_image_and_a_mask(call):
    init = photo()
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, SIZE // 2:] = 255            # repaint the right half only
    r = call("POST", "/sdapi/v1/img2img", json=txt2img(
        init_images=[b64(init, prefix=True)], mask=b64(mask), mask_blur=0, denoising_strength=0.9,
        alwayson_scripts={"controlnet": {"args": [dict(two_units()[0], image=None)]}}))
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    out = picture(images[0]).astype(int)
    assert np.abs(out[:, :SIZE // 2 - 4] - init[:, :SIZE // 2 - 4]).max() <= 2       # kept
    assert np.abs(out[:, SIZE // 2 + 4:] - init[:, SIZE // 2 + 4:]).mean() > 5       # repainted
    request = read_recipe(base64.b64decode(images[0]))
    assert request.init_image is not None and request.inpaint_mask is not None and request.strength == 0.9
    assert np.array_equal(picture(images[1]), init)   # a unit without an image reads the init image


def _start(call, payload) -> dict:
    box = {}

    def work():
        box["response"] = call("POST", "/sdapi/v1/txt2img", json=payload)
    box["thread"] = threading.Thread(target=work)
    box["thread"].start()
    return box


def _wait_for_step(call, at_least: int = 1) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        p = call("GET", "/sdapi/v1/progress").json()
        if p["state"]["sampling_step"] >= at_least:
            return p
        time.sleep(0.05)
    raise AssertionError("the job never reported a step")


def test_progress_shows_the_running_step_and_interrupt_returns_the_picture_so_far(call):
    job = _start(call, txt2img(steps=150, width=128, height=128))
    seen = _wait_for_step(call, 2)
    assert seen["state"]["sampling_steps"] == 150 and 0 < seen["progress"] < 1
    later = _wait_for_step(call, seen["state"]["sampling_step"] + 1)
    assert later["current_image"] is not None                   # the preview the poll asked the loop for
    assert picture(later["current_image"]).shape == (128, 128, 3)
    assert call("POST", "/sdapi/v1/interrupt").json() == {}
    job["thread"].join(120)
    answer = job["response"].json()
    assert json.loads(answer["info"])["interrupted"] is True and len(answer["images"]) == 1
    assert read_recipe(base64.b64decode(answer["images"][0])).steps == 150
    idle = call("GET", "/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["sampling_step"] == 0 and idle["current_image"] is None


def test_a_rest_client_sees_a_gradio_job_in_progress_and_waits_behind_it(a1111, call):
    from gradio_client import Client

    from engine import GenerationRequest
    client = Client(a1111["url"] + "/", auth=a1111["auth"], verbose=False)
    job = client.submit(GenerationRequest(prompt="a red circle", steps=120, seed=1, width=128, height=128).to_json(),
                        api_name="/generate")
    seen = _wait_for_step(call, 1)
    assert seen["state"]["job"] == "gradio-api job" and seen["state"]["sampling_steps"] == 120
    started = time.monotonic()
    rest = _start(call, txt2img(steps=2))
    time.sleep(0.5)
    assert rest["thread"].is_alive()             # queued behind the Gradio job
    call("POST", "/sdapi/v1/interrupt")
    job.result(timeout=120)
    rest["thread"].join(120)
    assert rest["response"].status_code == 200 and time.monotonic() - started < 120


def test_detect_gives_the_annotators_map_for_either_image_key(call):
    expected = annotators.run("canny", photo(), low_threshold=60, high_threshold=120, detect_resolution=64)
    for key in ("controlnet_input_images", "controlnet_images"):
        r = call("POST", "/controlnet/detect", json={
            "controlnet_module": "canny", key: [b64(photo(), prefix=key == "controlnet_images")],
            "controlnet_processor_res": 64, "controlnet_threshold_a": 60, "controlnet_threshold_b": 120})
        assert r.status_code == 200, r.text
        assert np.array_equal(picture(r.json()["images"][0]), expected)


def test_render_openpose_json_draws_the_pose(call):
    pose = {"canvas_width": 64, "canvas_height": 64,
            "people": [{"pose_keypoints_2d": [32, 10, 1, 32, 20, 1] + [0, 0, 0] * 16}]}
    r = call("POST", "/controlnet/render_openpose_json", json=[pose])
    assert r.status_code == 200, r.text
    assert np.array_equal(picture(r.json()["images"][0]), annotators.render_pose(pose, 64, 64))


def test_options_switch_the_backbone_and_back(call):
    tiny = next(m["title"] for m in call("GET", "/sdapi/v1/sd-models").json() if m["model_name"] == "tiny")
    assert call("POST", "/sdapi/v1/options", json={"sd_model_checkpoint": tiny}).status_code == 200
    try:
        assert call("GET", "/sdapi/v1/options").json()["sd_model_checkpoint"] == tiny
        ran = json.loads(call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=1)).json()["info"])
        assert ran["sd_model_name"] == "tiny"
        once = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=1, override_settings={"sd_model_checkpoint": "demo"}))
        assert json.loads(once.json()["info"])["sd_model_name"] == "demo"
        assert call("GET", "/sdapi/v1/options").json()["sd_model_checkpoint"] == tiny   # for that request only
    finally:
        assert call("POST", "/sdapi/v1/options", json={"sd_model_checkpoint": "demo"}).status_code == 200
    assert call("GET", "/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("demo [")


def test_options_switch_to_an_sdxl_backbone_and_its_controlnets_run(call):
    xl = next(m["title"] for m in call("GET", "/sdapi/v1/sd-models").json() if m["model_name"] == "tiny-xl")
    assert call("POST", "/sdapi/v1/options", json={"sd_model_checkpoint": xl}).status_code == 200
    unit = {"enabled": True, "module": "none", "model": "xl-canny", "image": b64(scribble()), "weight": 0.8}
    try:
        r = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=2, alwayson_scripts={"controlnet": {"args": [unit]}}))
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["info"])["sd_model_name"] == "tiny-xl"
        assert picture(r.json()["images"][0]).shape[:2] == (SIZE, SIZE)
        wrong = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=1, alwayson_scripts={"controlnet": {"args": [
            {**unit, "model": "demo:scribble"}]}}))
        assert wrong.status_code >= 400 and "SDXL" in wrong.text and "Traceback" not in wrong.text
    finally:
        assert call("POST", "/sdapi/v1/options", json={"sd_model_checkpoint": "demo"}).status_code == 200


def test_union_and_adapter_units_through_the_extensions_fields(call):
    """A Union unit takes the extension's union_control_type ("Unknown": from the module); an SDXL
    adapter and a ControlNet run beside it in one request; a type the model lacks is a 4xx naming it."""
    xl = next(m["title"] for m in call("GET", "/sdapi/v1/sd-models").json() if m["model_name"] == "tiny-xl")
    listed = {m.split(" [")[0] for m in call("GET", "/controlnet/model_list").json()["model_list"]}
    assert {"controlnet-union-sdxl-1.0", "t2i-adapter_xl_canny"} <= listed
    assert call("POST", "/sdapi/v1/options", json={"sd_model_checkpoint": xl}).status_code == 200
    union = {"module": "none", "model": "controlnet-union-sdxl-1.0", "image": b64(scribble()),
             "union_control_type": "hard edge"}
    units = [union, {"module": "none", "model": "t2i-adapter_xl_canny", "image": b64(scribble()), "weight": 0.6},
             {"module": "canny", "model": "controlnet-union-sdxl-1.0", "image": b64(photo()),
              "union_control_type": "Unknown", "guidance_end": 0.5}]
    try:
        r = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=2, alwayson_scripts={"controlnet": {"args": units}}))
        assert r.status_code == 200, r.text
        assert not any("union_control_type" in w for w in json.loads(r.json()["info"]).get("warnings", []))
        recipe = read_recipe(base64.b64decode(r.json()["images"][0]))
        assert [u.union_control_type for u in recipe.units] == ["Hard Edge", None, None]
        assert recipe.units[2].annotator == "canny"      # whose kind picks Hard Edge when the unit runs
        for bad, said in (("Tile", "ProMax"), ("Sketch", "is not one of")):
            wrong = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=1, alwayson_scripts={"controlnet": {
                "args": [{**union, "union_control_type": bad}]}}))
            assert wrong.status_code >= 400 and said in wrong.text and "Traceback" not in wrong.text, wrong.text
    finally:
        assert call("POST", "/sdapi/v1/options", json={"sd_model_checkpoint": "demo"}).status_code == 200


def test_reference_modules_run_model_free_with_threshold_a_as_style_fidelity(call):
    detail = call("GET", "/controlnet/module_list", params={"alias_names": "true"}).json()["module_detail"]
    assert detail["reference_only"]["model_free"] is True
    assert detail["reference_adain+attn"]["sliders"][0]["name"] == "Style Fidelity (only for Balanced mode)"
    unit = {"enabled": True, "module": "reference_adain+attn", "model": "None", "image": b64(photo()),
            "weight": 0.9, "threshold_a": 0.8, "control_mode": "ControlNet is more important"}
    r = call("POST", "/sdapi/v1/txt2img", json=txt2img(alwayson_scripts={"controlnet": {"args": [unit]}}))
    assert r.status_code == 200, r.text
    request = read_recipe(base64.b64decode(r.json()["images"][0]))
    (got,) = request.units
    assert (got.model, got.weight, got.style_fidelity, got.mode, got.annotator) == (
        "reference_adain+attn", 0.9, 0.8, "control", None)
    assert np.array_equal(got.image, photo())                          # the picture itself is the reference
    assert 'Module: reference_adain+attn, Model: None' in json.loads(r.json()["info"])["infotexts"][0]
    plain = call("POST", "/sdapi/v1/txt2img", json=txt2img()).json()
    assert np.abs(picture(plain["images"][0]).astype(int) - picture(r.json()["images"][0]).astype(int)).mean() > 1.0
    masked = dict(unit, effective_region_mask=b64(np.full((SIZE, SIZE, 3), 255, np.uint8)))
    bad = call("POST", "/sdapi/v1/txt2img", json=txt2img(alwayson_scripts={"controlnet": {"args": [masked]}}))
    assert bad.status_code == 422 and "takes no mask" in bad.text


def test_ip_adapter_modules_take_the_adapters_name_as_model(call):
    """The extension's IP-Adapter modules (older and newer names) with an adapter in models/ipadapters/
    as the model make an IP-Adapter unit; the picture goes to the encoder as it is; a wrong model is a 422."""
    tiny = next(m["title"] for m in call("GET", "/sdapi/v1/sd-models").json() if m["model_name"] == "tiny")
    listed = call("GET", "/controlnet/model_list").json()["model_list"]
    title = next(m for m in listed if m.startswith("ip-adapter_sd15 ["))
    assert call("GET", "/controlnet/control_types").json()["control_types"]["IP-Adapter"]["default_model"] == title
    detail = call("GET", "/controlnet/module_list", params={"alias_names": "true"}).json()["module_detail"]
    assert detail["ip-adapter_clip_sd15"]["model_free"] is False and "ip-adapter_clip_sdxl_plus_vith" in detail
    assert call("POST", "/sdapi/v1/options", json={"sd_model_checkpoint": tiny}).status_code == 200
    try:
        unit = {"enabled": True, "module": "ip-adapter_clip_sd15", "model": title, "image": b64(photo()),
                "weight": 0.9, "guidance_start": 0.0, "guidance_end": 0.8}
        r = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=2, alwayson_scripts={"controlnet": {"args": [unit]}}))
        assert r.status_code == 200, r.text
        (got,) = read_recipe(base64.b64decode(r.json()["images"][0])).units
        assert (got.model, got.weight, got.end, got.annotator) == ("ip-adapter_sd15", 0.9, 0.8, None)
        assert np.array_equal(got.image, photo())
        assert "Module: ip-adapter_clip_sd15, Model: ip-adapter_sd15" in json.loads(r.json()["info"])["infotexts"][0]
        plain = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=2)).json()
        assert np.abs(picture(plain["images"][0]).astype(int) - picture(r.json()["images"][0]).astype(int)).max() > 2
        # the newer module name, the model without its hash: the same picture
        same = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=2, alwayson_scripts={"controlnet": {"args": [
            dict(unit, module="ip-adapter_clip_h", model="ip-adapter_sd15")]}})).json()
        assert same["images"][0] == r.json()["images"][0]
        # another module with an IP-Adapter model: still the adapter, reading the picture itself
        other = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=2, alwayson_scripts={"controlnet": {"args": [
            dict(unit, module="canny")]}})).json()
        assert other["images"][0] == r.json()["images"][0]
        assert any("reads the picture itself" in w for w in json.loads(other["info"])["warnings"])
        bad = call("POST", "/sdapi/v1/txt2img", json=txt2img(steps=1, alwayson_scripts={"controlnet": {"args": [
            dict(unit, model="ip-adapter_plus_nowhere")]}}))
        assert bad.status_code == 422 and "ip-adapter_sd15" in bad.text and "Traceback" not in bad.text, bad.text
    finally:
        assert call("POST", "/sdapi/v1/options", json={"sd_model_checkpoint": "demo"}).status_code == 200


def test_txt2img_hires_fix_maps_a1111s_fields_and_hr_option(call):
    unit = dict(two_units()[0], hr_option="Low res only", save_detected_map=False)
    r = call("POST", "/sdapi/v1/txt2img", json=txt2img(
        enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2, denoising_strength=0.55, hr_upscaler="R-ESRGAN 4x+",
        hr_prompt="", hr_sampler_name=None, alwayson_scripts={"controlnet": {"args": [unit]}}))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert len(answer["images"]) == 1 and picture(answer["images"][0]).shape == (96, 96, 3)
    request = read_recipe(base64.b64decode(answer["images"][0]))
    assert (request.enable_hr, request.hr_scale, request.hr_second_pass_steps, request.strength,
            request.hr_upscaler) == (True, 1.5, 2, 0.55, "Lanczos")
    assert request.units[0].hr_option == "low"
    info = json.loads(answer["info"])
    assert (info["width"], info["height"], info["denoising_strength"]) == (SIZE, SIZE, 0.55)
    assert info["extra_generation_params"] == {"Hires upscale": 1.5, "Hires steps": 2, "Hires upscaler": "Lanczos"}
    said = [w for w in info["warnings"] if "R-ESRGAN 4x+" in w]
    assert said and "used Lanczos" in said[0] and not any("ignored" in w for w in info["warnings"])
    assert "Hires upscale: 1.5" in info["infotexts"][0] and "Hr Option: Low res only" in info["infotexts"][0]
    bad = call("POST", "/sdapi/v1/txt2img", json=txt2img(
        enable_hr=True, alwayson_scripts={"controlnet": {"args": [dict(unit, hr_option="Sometimes")]}}))
    assert bad.status_code == 422 and "hr_option 'Sometimes' is not one of: Both, High Res Only, Low Res Only" \
        in bad.text
