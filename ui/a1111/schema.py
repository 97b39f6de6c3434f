"""The REST payloads, with AUTOMATIC1111's and the ControlNet extension's field names
(A1111 modules/api/models.py, the extension's internal_controlnet/args.py). The bounds are the
engine's own (engine.limits), and every payload becomes a GenerationRequest, which checks them
again; fields this studio has no use for are kept (extra="allow") so the answer can name them."""
from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine import limits

MAX_N_ITER = 64          # batches in one request (A1111 sets no bound; a queue needs one)
MAX_RESOLUTION = 2048    # processor_res: the annotators' detect_resolution bound

Picture = Union[str, dict]   # base64, or the extension's {"image": base64, "mask": base64}


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    def unknown(self) -> list[str]:
        return sorted(self.model_extra or {})


class ControlNetUnitArgs(Loose):
    """One unit of `alwayson_scripts.controlnet.args`, as the extension names its fields."""

    enabled: bool = True
    module: str = "none"
    model: str = "None"
    weight: float = Field(1.0, ge=0.0, le=limits.MAX_WEIGHT)
    image: Optional[Picture] = None
    mask: Optional[str] = None
    mask_image: Optional[str] = None
    resize_mode: Union[str, int] = "Crop and Resize"
    low_vram: bool = False
    processor_res: float = Field(-1, ge=-1, le=MAX_RESOLUTION)
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = Field(0.0, ge=0.0, le=1.0)
    guidance_end: float = Field(1.0, ge=0.0, le=1.0)
    control_mode: Union[str, int] = "Balanced"
    pixel_perfect: bool = False
    save_detected_map: bool = True
    effective_region_mask: Optional[str] = None
    union_control_type: Optional[str] = None     # a Union model's type; "Unknown": from the module
    hr_option: Union[str, int] = "Both"
    # deprecated spellings the extension still reads
    input_image: Optional[Picture] = None
    guidance: Optional[float] = Field(None, ge=0.0, le=1.0)
    lowvram: Optional[bool] = None

    @model_validator(mode="after")
    def _window(self):
        end = self.guidance if self.guidance is not None and "guidance_end" not in self.model_fields_set \
            else self.guidance_end
        if self.guidance_start > end:
            raise ValueError(f"guidance_start ({self.guidance_start}) is after guidance_end ({end}); "
                             "both are fractions of the steps, start before end")
        return self

    def unknown(self) -> list[str]:
        ignored = {"inpaint_crop_input_image", "advanced_weighting",
                   "pulid_mode", "ipadapter_input", "batch_images", "is_ui", "input_mode", "output_dir",
                   "loopback", "use_preview_as_input", "generated_image", "animatediff_batch", "batch_modifiers",
                   "batch_mask_dir", "batch_input_gallery", "batch_mask_gallery", "image_fidelity"}
        return sorted(k for k in super().unknown() if k not in ignored)


class Script(Loose):
    args: list = Field(default_factory=list)


class Txt2Img(Loose):
    """POST /sdapi/v1/txt2img (A1111's StableDiffusionTxt2ImgProcessingAPI, the fields that map)."""

    prompt: str = Field("", max_length=limits.MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=limits.MAX_PROMPT_CHARS)
    steps: int = Field(20, ge=1, le=limits.MAX_STEPS)
    cfg_scale: Optional[float] = Field(None, ge=0.0, le=limits.MAX_CFG_SCALE)
    width: Optional[int] = Field(None, ge=limits.MIN_SIZE, le=limits.MAX_SIZE)
    height: Optional[int] = Field(None, ge=limits.MIN_SIZE, le=limits.MAX_SIZE)
    seed: int = Field(-1, ge=-1, le=limits.MAX_SEED)
    sampler_name: Optional[str] = None
    sampler_index: Optional[str] = None
    batch_size: int = Field(1, ge=1, le=limits.MAX_BATCH_SIZE)
    n_iter: int = Field(1, ge=1, le=MAX_N_ITER)
    denoising_strength: Optional[float] = Field(None, ge=0.0, le=1.0)
    # the hires fix (engine.hires); A1111's defaults
    enable_hr: bool = False
    hr_scale: float = Field(2.0, ge=1.0, le=limits.MAX_HR_SCALE)
    hr_resize_x: int = Field(0, ge=0, le=limits.MAX_SIZE)
    hr_resize_y: int = Field(0, ge=0, le=limits.MAX_SIZE)
    hr_second_pass_steps: int = Field(0, ge=0, le=limits.MAX_STEPS)
    hr_upscaler: Optional[str] = None
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)

    def unknown(self) -> list[str]:
        # what A1111's own clients send by default and means nothing changed (hires fix off, no styles ...)
        defaults = {"styles": [], "firstphase_width": 0, "firstphase_height": 0, "hr_prompt": "",
                    "hr_negative_prompt": "", "hr_sampler_name": None, "hr_checkpoint_name": None, "subseed": -1,
                    "subseed_strength": 0, "restore_faces": False,
                    "tiling": False, "script_name": None, "script_args": [], "do_not_save_samples": False,
                    "do_not_save_grid": False, "include_init_images": False, "scheduler": "automatic"}
        extra = self.model_extra or {}
        return sorted(k for k in extra if k not in defaults or extra[k] not in (defaults[k], None, ""))


class Img2Img(Txt2Img):
    """POST /sdapi/v1/img2img: txt2img's fields plus the init image and the inpainting mask."""

    init_images: list[str] = Field(..., min_length=1, max_length=limits.MAX_BATCH_SIZE)
    mask: Optional[str] = None
    mask_blur: int = Field(4, ge=0, le=64)
    inpainting_fill: int = Field(1, ge=0, le=3)
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    denoising_strength: float = Field(0.75, ge=0.0, le=1.0)


class Detect(Loose):
    """POST /controlnet/detect. webuiapi sends the pictures as `controlnet_images`."""

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list, max_length=limits.MAX_BATCH_SIZE)
    controlnet_images: list[str] = Field(default_factory=list, max_length=limits.MAX_BATCH_SIZE)
    controlnet_masks: Optional[list[str]] = None
    controlnet_processor_res: float = Field(512, ge=-1, le=MAX_RESOLUTION)
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1
    low_vram: bool = False

    @model_validator(mode="after")
    def _pictures(self):
        if not (self.controlnet_input_images or self.controlnet_images):
            raise ValueError("controlnet_input_images is empty; send at least one base64 picture")
        return self


class Pose(Loose):
    """One OpenPose JSON of POST /controlnet/render_openpose_json."""

    people: list[dict] = Field(default_factory=list)
    canvas_width: int = Field(512, ge=1, le=limits.MAX_IMAGE_SIDE)
    canvas_height: int = Field(512, ge=1, le=limits.MAX_IMAGE_SIDE)
