"""Every prompt word a word-level vocabulary lacks is reported; a real CLIP tokenizer reports none."""
from engine import load_backbone
from engine.loading.tokenizers import clip_tokenizer
from engine.prompt import ignored_words


def test_the_demo_reports_every_word_it_lacks_not_only_unknown_letters():
    tokenizer = load_backbone("demo").tokenizer
    prompt = "a majestic dragon over mountains at sunset"
    assert ignored_words(tokenizer, prompt) == ["dragon", "majestic", "mountains", "over", "sunset"]
    assert ignored_words(tokenizer, "A large red star on a white background") == []


def test_a_real_clip_tokenizer_reports_nothing():
    assert ignored_words(clip_tokenizer(), "a majestic dragon over mountains at sunset") == []
