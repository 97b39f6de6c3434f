"""The demo tokenizer: one token per world word, loadable by CLIPTokenizer, unknown letters unknown."""
from transformers import CLIPTokenizer

from demo import vocab, world


def test_every_word_is_one_token_and_the_folder_loads_back(tmp_path):
    words = world.vocabulary()
    tok = vocab.save_tokenizer(words, tmp_path)
    assert (tmp_path / "vocab.json").is_file() and (tmp_path / "merges.txt").is_file()
    loaded = CLIPTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    ids = loaded("a red star and a small blue circle on a yellow background").input_ids
    assert len(ids) == 12 + 2
    assert loaded.convert_ids_to_tokens(ids[1:4]) == ["a</w>", "red</w>", "star</w>"]
    assert tok.unk_token == "<|unk|>"


def test_unknown_words_are_told_apart():
    tok = vocab.build_tokenizer(world.vocabulary())
    known, unknown = vocab.known_words(tok, "A red zebra star, quickly!")
    assert known == ["a", "red", "star"] and unknown == ["zebra", "quickly"]
    # letters no world word uses cannot be spelled: they become the unknown token
    assert tok.unk_token_id in tok("zzz qqq", add_special_tokens=False).input_ids


def test_vocabulary_words_must_be_plain_lowercase():
    import pytest
    with pytest.raises(ValueError, match="lowercase letters"):
        vocab.build_tokenizer(["red", "two-tone"])
