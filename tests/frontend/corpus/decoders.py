"""Loop-heavy and shape-heavy models: teacher-forced attention decoders, a forecaster that calls
nn.LSTM once per step, hierarchical and per-frame models whose batch folds in another axis, a
positional-encoding tagger and a max-over-time text classifier (STFT front ends, whose input is
samples rather than steps, are checked in ``test_stft.py``)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import Entry, gen, randn, seeded

# ---------------------------------------------------------------------------------------------------------------
# 33. Seq2seq training forward: GRU encoder, Bahdanau attention, teacher-forced target ids
# ---------------------------------------------------------------------------------------------------------------


class BahdanauTeacherForced(nn.Module):  # the "NMT with attention" tutorial's decoder, training forward
    def __init__(self, vocab=40, emb=16, hidden=32):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.encoder = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.W_a = nn.Linear(hidden, hidden, bias=False)
        self.U_a = nn.Linear(2 * hidden, hidden)
        self.v_a = nn.Linear(hidden, 1, bias=False)
        self.decoder = nn.GRUCell(emb + 2 * hidden, hidden)
        self.out = nn.Linear(hidden + 2 * hidden + emb, vocab)

    def forward(self, src, tgt):
        enc, h = self.encoder(self.embedding(src))
        hidden = torch.tanh(self.bridge(torch.cat([h[0], h[1]], dim=1)))
        keys = self.U_a(enc)
        logits = []
        for t in range(tgt.size(1)):
            emb = self.embedding(tgt[:, t])
            scores = self.v_a(torch.tanh(self.W_a(hidden).unsqueeze(1) + keys)).squeeze(2)
            weights = F.softmax(scores, dim=1)
            context = torch.bmm(weights.unsqueeze(1), enc).squeeze(1)
            hidden = self.decoder(torch.cat([emb, context], dim=1), hidden)
            logits.append(self.out(torch.cat([hidden, context, emb], dim=1)))
        return torch.stack(logits, dim=1)


def _bahdanau_inputs(batch, length):
    g = gen("bahdanau_teacher_forced", batch, length)
    src = torch.randint(1, 40, (batch, length), generator=g)
    tgt = torch.randint(1, 40, (batch, max(1, length // 2 + 1)), generator=g)
    return src, tgt


# ---------------------------------------------------------------------------------------------------------------
# 34. DeepAR as its training loop writes it: nn.LSTM called once per time step, series embedding
# ---------------------------------------------------------------------------------------------------------------


class DeepARStepwise(nn.Module):
    def __init__(self, num_series=10, emb=6, cov=4, hidden=24, layers=2):
        super().__init__()
        self.layers, self.hidden = layers, hidden
        self.embedding = nn.Embedding(num_series, emb)
        self.lstm = nn.LSTM(1 + cov + emb, hidden, num_layers=layers)
        self.mu = nn.Linear(hidden * layers, 1)
        self.presigma = nn.Linear(hidden * layers, 1)

    def forward(self, x, idx):  # x: [T, B, 1 + cov] seq-first, idx: [B]
        batch = x.shape[1]
        h = torch.zeros(self.layers, batch, self.hidden)
        c = torch.zeros(self.layers, batch, self.hidden)
        series = self.embedding(idx.unsqueeze(0))
        mus, sigmas = [], []
        for t in range(x.shape[0]):
            _, (h, c) = self.lstm(torch.cat((x[t].unsqueeze(0), series), dim=2), (h, c))
            flat = h.permute(1, 2, 0).contiguous().view(h.shape[1], -1)
            mus.append(self.mu(flat).squeeze(-1))
            sigmas.append(F.softplus(self.presigma(flat)).squeeze(-1))
        return torch.stack(mus, dim=1), torch.stack(sigmas, dim=1)


def _deepar_inputs(batch, length):
    g = gen("deepar_stepwise", batch, length)
    return randn(g, length, batch, 5), torch.randint(0, 10, (batch,), generator=g)


# ---------------------------------------------------------------------------------------------------------------
# 35. Hierarchical attention network: word GRU over [B*S, W], sentence GRU over [B, S]
# ---------------------------------------------------------------------------------------------------------------


class AttnPool(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.context = nn.Linear(dim, 1, bias=False)

    def forward(self, h):
        weights = F.softmax(self.context(torch.tanh(self.proj(h))), dim=1)
        return (weights * h).sum(dim=1)


class HierarchicalAttention(nn.Module):  # Yang et al. 2016, as most ports write it
    def __init__(self, vocab=50, emb=16, hidden=16, classes=4):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.word_gru = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.word_pool = AttnPool(2 * hidden)
        self.sent_gru = nn.GRU(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.sent_pool = AttnPool(2 * hidden)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, docs):  # [B, S, W] token ids
        b, s, w = docs.size()
        words, _ = self.word_gru(self.embedding(docs.view(b * s, w)))
        sentences = self.word_pool(words).view(b, s, -1)
        doc, _ = self.sent_gru(sentences)
        return self.fc(self.sent_pool(doc))


def _han_inputs(batch, length):
    g = gen("hierarchical_attention", batch, length)
    return (torch.randint(1, 50, (batch, max(1, length // 4), length), generator=g),)


# ---------------------------------------------------------------------------------------------------------------
# 36. Per-frame CNN (adaptive pooling) over [B*T, C, H, W] frames, then an LSTM
# ---------------------------------------------------------------------------------------------------------------


class FrameCNNLSTM(nn.Module):
    def __init__(self, hidden=24, classes=5):
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((2, 2)))
        self.lstm = nn.LSTM(32, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, frames):  # [B, T, 3, H, W]
        b, t, c, h, w = frames.shape
        feats = self.cnn(frames.view(b * t, c, h, w)).view(b, t, -1)
        out, _ = self.lstm(feats)
        return self.fc(out[:, -1])


def _frames_inputs(batch, length):
    g = gen("frame_cnn_lstm", batch, length)
    return (randn(g, batch, length, 3, 12, 10),)


# ---------------------------------------------------------------------------------------------------------------
# 37. Transformer encoder (sinusoidal positional-encoding buffer sliced to T) + BiLSTM tagger
# ---------------------------------------------------------------------------------------------------------------


class PositionalEncoding(nn.Module):  # the PyTorch transformer tutorial's
    def __init__(self, d_model, max_len=512):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(position * div_term)
        pe[:, 0, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x):  # [T, B, D]
        return x + self.pe[:x.size(0)]


class TransformerLSTMTagger(nn.Module):
    def __init__(self, vocab=60, d_model=32, tags=6):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.pos = PositionalEncoding(d_model)
        layer = nn.TransformerEncoderLayer(d_model, 4, 64, dropout=0.1)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.lstm = nn.LSTM(d_model, d_model // 2, bidirectional=True)
        self.tags = nn.Linear(d_model, tags)

    def forward(self, tokens):  # [T, B] time-major token ids
        x = self.pos(self.embedding(tokens) * math.sqrt(self.embedding.embedding_dim))
        out, _ = self.lstm(self.encoder(x))
        return self.tags(out)


def _transformer_inputs(batch, length):
    g = gen("transformer_lstm_tagger", batch, length)
    return (torch.randint(1, 60, (length, batch), generator=g),)


# ---------------------------------------------------------------------------------------------------------------
# 38. CNN-LSTM text classifier with max-over-time pooling written as F.max_pool1d(x, x.size(2))
# ---------------------------------------------------------------------------------------------------------------


class CNNLSTMText(nn.Module):
    def __init__(self, vocab=60, emb=16, hidden=24, classes=3):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.conv = nn.Conv1d(emb, emb, 3, padding=1)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, tokens):
        x = F.relu(self.conv(self.embedding(tokens).permute(0, 2, 1))).permute(0, 2, 1)
        out, _ = self.lstm(x)
        out = out.permute(0, 2, 1)
        return self.fc(F.max_pool1d(out, out.size(2)).squeeze(2))


def _cnn_text_inputs(batch, length):
    g = gen("cnn_lstm_text", batch, length)
    return (torch.randint(1, 60, (batch, length), generator=g),)


ENTRIES = [
    Entry("bahdanau_teacher_forced", seeded(BahdanauTeacherForced), _bahdanau_inputs, ({0: "B", 1: "T"}, {0: "B"}),
          "seq2seq", ("embedding", "bigru", "grucell_loop", "teacher_forcing", "additive_attention", "bmm",
                      "two_lengths", "int64_tokens")),
    Entry("deepar_stepwise", seeded(DeepARStepwise), _deepar_inputs, ({0: "T", 1: "B"}, {0: "B"}), "timeseries",
          ("lstm_called_per_step", "lstm_2layer", "embedding", "permute_view", "softplus", "seq_first")),
    Entry("hierarchical_attention", seeded(HierarchicalAttention), _han_inputs, ({0: "B", 2: "T"},), "text",
          ("view_batch_times_sentences", "bigru", "attention_pooling", "two_symbolic_axes", "int64_tokens")),
    Entry("frame_cnn_lstm", seeded(FrameCNNLSTM), _frames_inputs, ({0: "B", 1: "T"},), "vision",
          ("view_batch_times_frames", "conv2d", "batchnorm2d", "maxpool2d", "adaptive_avg_pool2d", "lstm",
           "last_step")),
    Entry("transformer_lstm_tagger", seeded(TransformerLSTMTagger), _transformer_inputs, ({0: "T", 1: "B"},), "text",
          ("positional_encoding_buffer_slice", "transformer_encoder", "bilstm_seq_first", "int64_tokens")),
    Entry("cnn_lstm_text", seeded(CNNLSTMText), _cnn_text_inputs, ({0: "B", 1: "T"},), "text",
          ("embedding", "conv1d", "lstm", "max_pool1d_over_time", "int64_tokens")),
]
