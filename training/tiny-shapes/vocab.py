"""The word-level vocabulary shared by training and the exported tokenizer.json."""
from data import COLORS, SHAPES

SPECIAL = ["[PAD]", "[UNK]"]
WORDS = ["a", "an", "the", "on", "in", "of", "with", "background"] + list(COLORS) + SHAPES
VOCAB = {w: i for i, w in enumerate(SPECIAL + WORDS)}
PAD_ID = VOCAB["[PAD]"]
UNK_ID = VOCAB["[UNK]"]


def encode(text, max_len):
    """Lower-case, split on whitespace and punctuation, map to ids, pad/truncate (same as tokenizer.json)."""
    import re

    words = re.findall(r"\w+|[^\w\s]+", text.lower())
    ids = [VOCAB.get(w, UNK_ID) for w in words][:max_len]
    return ids + [PAD_ID] * (max_len - len(ids))
