"""Evidence slots -> LM tokens: each slot reads as a short phrase in the LM's own words, "two brown dogs animal".

    SlotProjector(words, lm, tokenizer, slots)(slots)   # float [N, S, FIELDS] -> [N, S * SLOT_TOKENS, hidden]

A slot is SLOT_TOKENS = 6 tokens: [count][colour][name][name][hypernym][hypernym]. The count word ("two" .. "many")
shows only from two on, and then the name is plural; a one-token name is right-aligned, so a name always ends at
index NAME_END (the slot's summary token: what `voco.train.kv_distill` teaches a `<voco>` token to look like).
Each token is the LM's input embedding of that word (frozen, derived at assembly, never saved); a learned pad
vector fills what is missing. To every token of a slot the projector adds a learned confidence term (from the
slot's score) and a learned slot embedding, both starting near zero: the frozen LM first reads plain words.
"""

from __future__ import annotations

import torch
from torch import nn

from voco.colours import COLOURS
from voco.evidence.tower import COLOUR, COUNT, HYPERNYMS, NAME, SCORE

SLOT_TOKENS = 6
COUNT_AT, COLOUR_AT, NAME_END = 0, 1, 3
COUNT_WORDS = ("two", "three", "four", "many")
IRREGULAR = {"person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
             "fish": "fish", "sheep": "sheep", "deer": "deer", "goose": "geese", "glasses": "glasses"}


def plural(word: str) -> str:
    *head, last = word.split(" ")
    if last in IRREGULAR:
        last = IRREGULAR[last]
    elif last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join([*head, last])


def count_word(count: torch.Tensor) -> torch.Tensor:
    """Index into COUNT_WORDS of each count of two or more ("many" from five on)."""
    return count.clamp(max=5) - 2


def word_tokens(tokenizer, words, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[len(words), length] token ids of each word after a space, right-aligned (the last token at the end), and
    the mask of real tokens; a word longer than `length` keeps its last `length` tokens."""
    ids = torch.zeros(len(words), length, dtype=torch.long)
    mask = torch.zeros(len(words), length, dtype=torch.bool)
    for i, word in enumerate(words):
        toks = tokenizer(f" {word}", add_special_tokens=False)["input_ids"][-length:]
        if not toks:
            raise ValueError(f"evidence word {word!r} encodes to no tokens")
        ids[i, length - len(toks):] = torch.tensor(toks)
        mask[i, length - len(toks):] = True
    return ids, mask


class SlotProjector(nn.Module):
    """Evidence slots [N, S, FIELDS] -> [N, S * SLOT_TOKENS, hidden] (see the module doc)."""

    def __init__(self, words: tuple[str, ...], embeddings: torch.Tensor, tokenizer, slots: int):
        super().__init__()
        hidden = embeddings.shape[1]
        self.slots, self.words = slots, words
        names, names_mask = word_tokens(tokenizer, words, 2)
        plurals, plurals_mask = word_tokens(tokenizer, [plural(w) for w in words], 2)
        single, single_mask = word_tokens(tokenizer, [*words, *COLOURS, *COUNT_WORDS], 1)
        for buffer, value in (("name_ids", names), ("name_mask", names_mask), ("plural_ids", plurals),
                              ("plural_mask", plurals_mask), ("single_ids", single[:, 0]),
                              ("single_mask", single_mask[:, 0])):
            self.register_buffer(buffer, value, persistent=False)
        self.register_buffer("table", embeddings.detach().clone(), persistent=False)  # the LM's input embeddings
        self.colour_offset, self.count_offset = len(words), len(words) + len(COLOURS)
        self.pad = nn.Parameter(torch.zeros(hidden))
        self.confidence = nn.Linear(1, hidden)
        self.slot = nn.Parameter(torch.zeros(slots, hidden))
        with torch.no_grad():
            self.confidence.weight.normal_(std=0.01)
            self.confidence.bias.zero_()

    @property
    def tokens_per_frame(self) -> int:
        return self.slots * SLOT_TOKENS

    def token_ids(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [N, S, SLOT_TOKENS] and their mask (False: the pad vector) of every slot."""
        N, S, _ = slots.shape
        name = slots[..., NAME].long()
        filled = name >= 0
        name = name.clamp_min(0)
        count = slots[..., COUNT].nan_to_num(1).long()
        many = filled & (count >= 2)
        ids = torch.zeros(N, S, SLOT_TOKENS, dtype=torch.long, device=slots.device)
        mask = torch.zeros(N, S, SLOT_TOKENS, dtype=torch.bool, device=slots.device)
        ids[..., COUNT_AT] = self.single_ids[self.count_offset + count_word(count).clamp(0, 3)]
        mask[..., COUNT_AT] = many
        colour = slots[..., COLOUR].long()
        ids[..., COLOUR_AT] = self.single_ids[self.colour_offset + colour.clamp_min(0)]
        mask[..., COLOUR_AT] = filled & (colour >= 0)
        ids[..., 2:4] = torch.where(many[..., None], self.plural_ids[name], self.name_ids[name])
        mask[..., 2:4] = filled[..., None] & torch.where(many[..., None], self.plural_mask[name], self.name_mask[name])
        for j in range(SLOT_TOKENS - 4):
            hyp = slots[..., HYPERNYMS + j].long()
            ids[..., 4 + j] = self.single_ids[hyp.clamp_min(0)]
            mask[..., 4 + j] = filled & (hyp >= 0)
        return ids, mask

    def summary_index(self, slots: torch.Tensor, k: int = 1) -> torch.Tensor:
        """[N, k] indices, within a frame's tokens, of the name ends of its first k slots (the first slot again
        where a frame has fewer filled slots than k)."""
        filled = (slots[..., NAME] >= 0).sum(-1).clamp_min(1)  # [N]
        j = torch.arange(k, device=slots.device)[None] % filled[:, None]  # [N, k]
        return j * SLOT_TOKENS + NAME_END

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        if slots.dim() != 3 or slots.shape[1] != self.slots:
            raise ValueError(f"evidence slots must be [frames, {self.slots}, fields], got {tuple(slots.shape)}")
        ids, mask = self.token_ids(slots)
        tokens = self.table[ids].to(self.pad.dtype)  # [N, S, L, hidden]
        tokens = torch.where(mask[..., None], tokens, self.pad)
        score = slots[..., SCORE].clamp_min(0)[..., None].to(tokens.dtype)  # [N, S, 1]
        extra = self.confidence(score) + self.slot  # [N, S, hidden]
        return (tokens + extra[:, :, None]).flatten(1, 2)

    def describe(self, slots: torch.Tensor) -> list[str]:
        """Each frame's slots as the words the LM reads, "two people | brown cat animal" (the text its tokens
        encode; for search, people and tests)."""
        return [" | ".join(p for p in (self.phrase(row) for row in frame) if p) for frame in slots]

    def phrase(self, slot: torch.Tensor) -> str:
        """One slot [FIELDS] as words: [count] [colour] name-or-plural [hypernyms]; "" for an empty slot."""
        name = int(slot[NAME])
        if name < 0:
            return ""
        count, colour = int(slot[COUNT]), int(slot[COLOUR])
        word = self.words[name]
        parts = [COUNT_WORDS[min(count, 5) - 2], plural(word)] if count >= 2 else [word]
        if colour >= 0:
            parts.insert(len(parts) - 1, COLOURS[colour])
        hyps = [self.words[int(h)] for h in slot[HYPERNYMS:] if h >= 0]
        return " ".join(parts + hyps)
