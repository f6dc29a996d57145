"""Text models: tied-weight LSTM LM, packed-sequence taggers/classifiers, LSTMs topped with attention."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .common import Entry, gen, padded_tokens, randn, random_lengths, seeded

# ---------------------------------------------------------------------------------------------------------------
# 5. Word-level LSTM language model with tied weights
# ---------------------------------------------------------------------------------------------------------------


class RNNModel(nn.Module):  # pytorch/examples word_language_model/model.py
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ["LSTM", "GRU"]:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            try:
                nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            except KeyError as e:
                raise ValueError(
                    """An invalid option for `--model` was supplied,
                                 options are ['LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU']"""
                ) from e
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

        # Optionally tie weights as in:
        # "Using the Output Embedding to Improve Language Models" (Press & Wolf 2016)
        # https://arxiv.org/abs/1608.05859
        # and
        # "Tying Word Vectors and Word Classifiers: A Loss Framework for Language Modeling" (Inan et al. 2016)
        # https://arxiv.org/abs/1611.01462
        if tie_weights:
            if nhid != ninp:
                raise ValueError("When using the tied flag, nhid must be equal to emsize")
            self.decoder.weight = self.encoder.weight

        self.init_weights()

        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden=None):
        # input: (seq_len, batch) token ids, as in the example's batchify()
        if hidden is None:
            hidden = self.init_hidden(input.size(1))
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        h, c = hidden
        return F.log_softmax(decoded, dim=1), h, c

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
        else:
            return weight.new_zeros(self.nlayers, bsz, self.nhid)


def _lm_inputs(batch, length):
    g = gen("lstm_lm_tied", batch, length)
    return (torch.randint(0, 100, (length, batch), generator=g, dtype=torch.int64),)


# ---------------------------------------------------------------------------------------------------------------
# 10. BiLSTM tagger with packed sequences, and a packed BiGRU sentence classifier
# ---------------------------------------------------------------------------------------------------------------


class BiLSTMTagger(nn.Module):  # typical NER/POS BiLSTM tagger (e.g. the BiLSTM-CRF tutorials, emissions only)
    def __init__(self, vocab_size=60, embedding_dim=24, hidden_dim=32, tagset_size=9, pad_idx=0, dropout=0.5):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_idx)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim // 2, num_layers=2, bidirectional=True, batch_first=True,
                            dropout=dropout)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)

    def forward(self, sentence, lengths):
        emb = self.dropout(self.embedding(sentence))
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out = self.lstm(packed)[0]
        lstm_out, _ = pad_packed_sequence(packed_out, batch_first=True)
        lstm_out = self.dropout(lstm_out)
        tag_space = self.hidden2tag(lstm_out)
        tag_scores = F.log_softmax(tag_space, dim=-1)
        return tag_scores


def _tagger_inputs(batch, length):
    g = gen("bilstm_tagger_packed", batch, length)
    lengths = random_lengths(g, batch, length)
    return padded_tokens(g, lengths, length, 60), lengths


class PackedGRUClassifier(nn.Module):  # bentrevett/pytorch-sentiment-analysis "packed padded sequences" model
    def __init__(self, vocab_size=60, embedding_dim=24, hidden_dim=32, output_dim=4, n_layers=2, bidirectional=True,
                 dropout=0.5, pad_idx=0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_idx)
        self.rnn = nn.GRU(embedding_dim, hidden_dim, num_layers=n_layers, bidirectional=bidirectional,
                          dropout=dropout, batch_first=True)
        self.fc = nn.Linear(hidden_dim * 2, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text, text_lengths):
        # text = [batch size, sent len]
        embedded = self.dropout(self.embedding(text))
        # pack sequence; lengths need to be on CPU!
        packed_embedded = nn.utils.rnn.pack_padded_sequence(embedded, text_lengths.to("cpu"), batch_first=True,
                                                            enforce_sorted=False)
        packed_output, hidden = self.rnn(packed_embedded)
        # unpack sequence
        output, output_lengths = nn.utils.rnn.pad_packed_sequence(packed_output, batch_first=True)
        # hidden = [num layers * num directions, batch size, hid dim]
        # concat the final forward (hidden[-2,:,:]) and backward (hidden[-1,:,:]) hidden layers
        hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
        return self.fc(hidden), output


def _classifier_inputs(batch, length):
    g = gen("packed_gru_classifier", batch, length)
    lengths = random_lengths(g, batch, length)
    return padded_tokens(g, lengths, length, 60), lengths


# ---------------------------------------------------------------------------------------------------------------
# 16. BiLSTM + nn.MultiheadAttention (batch_first) + residual/LayerNorm
# ---------------------------------------------------------------------------------------------------------------


class LSTMSelfAttnClassifier(nn.Module):  # "BiLSTM + multi-head self-attention" text classifiers on GitHub
    def __init__(self, vocab_size=60, emb_dim=24, hidden=16, n_heads=4, n_classes=5, dropout=0.1):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=0)
        self.lstm = nn.LSTM(emb_dim, hidden, batch_first=True, bidirectional=True)
        d_model = 2 * hidden
        self.mha = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * d_model, d_model))
        self.norm2 = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, n_classes)

    def forward(self, tokens, lengths):
        T = tokens.size(1)
        pad_mask = torch.arange(T, device=tokens.device)[None, :] >= lengths[:, None]  # True = padding
        x = self.embedding(tokens)
        x, _ = self.lstm(x)
        attn_out, _ = self.mha(x, x, x, key_padding_mask=pad_mask)
        x = self.norm1(x + attn_out)
        x = self.norm2(x + self.ffn(x))
        keep = (~pad_mask).unsqueeze(-1).float()
        pooled = (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        return self.classifier(pooled), x


def _mha_inputs(batch, length):
    g = gen("lstm_mha_classifier", batch, length)
    lengths = random_lengths(g, batch, length)
    return padded_tokens(g, lengths, length, 60), lengths


# ---------------------------------------------------------------------------------------------------------------
# 17. LSTM followed by causal F.scaled_dot_product_attention (nanoGPT-style attention block)
# ---------------------------------------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):  # karpathy/nanoGPT model.py CausalSelfAttention (flash path)
    def __init__(self, n_embd, n_head, dropout=0.0, bias=True):
        super().__init__()
        assert n_embd % n_head == 0
        # key, query, value projections for all heads, but in a batch
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        # output projection
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        # regularization
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head = n_head
        self.n_embd = n_embd
        self.dropout = dropout

    def forward(self, x):
        B, T, C = x.size()  # batch size, sequence length, embedding dimensionality (n_embd)

        # calculate query, key, values for all heads in batch and move head forward to be the batch dim
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)

        # causal self-attention; Self-attend: (B, nh, T, hs) x (B, nh, hs, T) -> (B, nh, T, T)
        y = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side

        # output projection
        y = self.resid_dropout(self.c_proj(y))
        return y


class LSTMCausalAttn(nn.Module):  # LSTM encoder + nanoGPT attention block (hybrid "LSTM+attention" forecasters)
    def __init__(self, n_in=20, d_model=32, n_head=4, n_out=8):
        super().__init__()
        self.lstm = nn.LSTM(n_in, d_model, num_layers=2, batch_first=True, dropout=0.1)
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head)
        self.ln_2 = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_out)

    def forward(self, x):
        x, _ = self.lstm(x)
        x = x + self.attn(self.ln_1(x))
        return self.head(self.ln_2(x))


def _sdpa_inputs(batch, length):
    g = gen("lstm_sdpa_causal", batch, length)
    return (randn(g, batch, length, 20),)


ENTRIES = [
    Entry("lstm_lm_tied", seeded(lambda: RNNModel("LSTM", 100, 32, 32, 2, dropout=0.2, tie_weights=True)),
          _lm_inputs, ({0: "T", 1: "B"},), "text",
          ("embedding", "tied_weights", "dropout_eval", "lstm_seq_first", "init_hidden_new_zeros", "view_flatten",
           "log_softmax", "int64_tokens")),
    Entry("bilstm_tagger_packed", seeded(BiLSTMTagger), _tagger_inputs, ({0: "B", 1: "T"}, {0: "B"}), "text",
          ("embedding_padding_idx", "pack_padded_unsorted", "bilstm_2layer", "pad_packed", "linear", "log_softmax",
           "int64_tokens", "lengths")),
    Entry("packed_gru_classifier", seeded(PackedGRUClassifier), _classifier_inputs, ({0: "B", 1: "T"}, {0: "B"}),
          "text",
          ("embedding_padding_idx", "pack_padded_unsorted", "bigru_2layer", "pad_packed", "h_n_packed", "concat",
           "int64_tokens", "lengths")),
    Entry("lstm_mha_classifier", seeded(LSTMSelfAttnClassifier), _mha_inputs, ({0: "B", 1: "T"}, {0: "B"}), "text",
          ("embedding", "bilstm", "multihead_attention", "key_padding_mask", "length_mask", "residual", "layernorm",
           "gelu", "masked_mean")),
    Entry("lstm_sdpa_causal", seeded(LSTMCausalAttn), _sdpa_inputs, ({0: "B", 1: "T"},), "text",
          ("lstm_2layer", "layernorm", "split", "view_heads", "scaled_dot_product_attention", "is_causal",
           "residual")),
]
