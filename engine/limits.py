"""Every bound a request is checked against, in one place (README links here).

The GUI's sliders, the HTTP API and the CLI all read these, so a value that one
entry point accepts is accepted by all of them.
"""

MIN_SIZE = 64            # pixels; smaller leaves the UNet's lowest level under 1 latent pixel
MAX_SIZE = 2048          # pixels per side; a 2048x2048 SD1.5 image already needs ~12 GB in fp16
SIZE_MULTIPLE = 8        # the VAE's down-scale; the UNet itself may need more, checked per backbone
MAX_STEPS = 150
MAX_CFG_SCALE = 30.0
MAX_BATCH_SIZE = 16
MAX_UNITS = 8
MAX_LORAS = 8           # LoRAs on at once
MAX_LORA_WEIGHT = 4.0   # either sign; A1111's prompt takes any number, but past ~2 most LoRAs only break the picture
MAX_WEIGHT = 2.0         # AUTOMATIC1111's slider range for a unit's weight
MAX_SEED = 2**32 - 1
MAX_HR_SCALE = 4.0       # AUTOMATIC1111's hires-fix slider range (1 to 4)
MAX_PROMPT_CHARS = 20_000
MAX_IMAGE_SIDE = 8192    # an input picture (control map, init image) larger than this is refused
MAX_RECIPE_BYTES = 16 * 1024 * 1024  # decompressed recipe text in a PNG
