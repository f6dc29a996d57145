"""A corpus of recurrent models written the way public repositories write them, for frontend tests.

``CORPUS`` maps a name to an :class:`Entry`:

- ``build()`` returns the model (seeded with ``torch.manual_seed(0)``, float32, ``.eval()``);
- ``inputs(batch, length)`` returns example inputs for ``model(*inputs)``, seeded from (name, batch, length);
  ``length`` is the time axis (image width for OCR, encoder length for encoder-decoder models);
- ``dynamic`` names, per input, which dims are the batch ("B") and the length ("T");
- ``length_multiple`` / ``min_length`` say which lengths the model accepts.

Only torch and the standard library are used; nothing here imports ``rnnc``.
"""

from __future__ import annotations

from . import audio, blocks, decoders, ocr, seq2seq, speech, text
from .common import Entry

__all__ = ["CORPUS", "Entry"]


def _collect() -> dict[str, Entry]:
    corpus: dict[str, Entry] = {}
    for module in (audio, ocr, speech, text, seq2seq, blocks, decoders):
        for entry in module.ENTRIES:
            if entry.name in corpus:
                raise ValueError(f"duplicate corpus entry {entry.name!r}")
            corpus[entry.name] = entry
    return corpus


CORPUS: dict[str, Entry] = _collect()
