"""Encoder-decoder models whose decoder is stepped in a Python loop over a fixed horizon."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import Entry, gen, padded_tokens, randn, random_lengths, seeded

# ---------------------------------------------------------------------------------------------------------------
# 6a. GRU encoder + LSTMCell decoder with Bahdanau (additive) attention, autoregressive forecasting
# ---------------------------------------------------------------------------------------------------------------


class Encoder(nn.Module):  # bentrevett/pytorch-seq2seq tutorial 3 encoder (continuous inputs instead of tokens)
    def __init__(self, input_dim, enc_hid_dim, dec_hid_dim, dropout):
        super().__init__()
        self.input_proj = nn.Linear(input_dim, enc_hid_dim)
        self.rnn = nn.GRU(enc_hid_dim, enc_hid_dim, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(enc_hid_dim * 2, dec_hid_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src):
        # src = [batch size, src len, input dim]
        embedded = self.dropout(F.relu(self.input_proj(src)))
        outputs, hidden = self.rnn(embedded)
        # outputs = [batch size, src len, enc hid dim * 2]
        # hidden [-2, :, : ] is the last of the forwards RNN, hidden [-1, :, : ] is the last of the backwards RNN
        hidden = torch.tanh(self.fc(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1)))
        return outputs, hidden


class BahdanauAttention(nn.Module):  # bentrevett/pytorch-seq2seq tutorial 3 attention
    def __init__(self, enc_hid_dim, dec_hid_dim):
        super().__init__()
        self.attn = nn.Linear((enc_hid_dim * 2) + dec_hid_dim, dec_hid_dim)
        self.v = nn.Linear(dec_hid_dim, 1, bias=False)

    def forward(self, hidden, encoder_outputs):
        # hidden = [batch size, dec hid dim]
        # encoder_outputs = [batch size, src len, enc hid dim * 2]
        src_len = encoder_outputs.shape[1]
        # repeat decoder hidden state src_len times
        hidden = hidden.unsqueeze(1).repeat(1, src_len, 1)
        energy = torch.tanh(self.attn(torch.cat((hidden, encoder_outputs), dim=2)))
        # energy = [batch size, src len, dec hid dim]
        attention = self.v(energy).squeeze(2)
        return F.softmax(attention, dim=1)


class AttnForecaster(nn.Module):  # "seq2seq LSTM with attention" multi-step time-series forecasters
    def __init__(self, input_dim=8, output_dim=4, enc_hid_dim=16, dec_hid_dim=32, max_len=12, dropout=0.1):
        super().__init__()
        self.output_dim = output_dim
        self.dec_hid_dim = dec_hid_dim
        self.max_len = max_len
        self.encoder = Encoder(input_dim, enc_hid_dim, dec_hid_dim, dropout)
        self.attention = BahdanauAttention(enc_hid_dim, dec_hid_dim)
        self.cell = nn.LSTMCell(output_dim + enc_hid_dim * 2, dec_hid_dim)
        self.fc_out = nn.Linear(enc_hid_dim * 2 + dec_hid_dim + output_dim, output_dim)
        self.dropout = nn.Dropout(dropout)
        # "Initialize parameters with Glorot / fan_avg." (copied from the Annotated Transformer)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x):
        b = x.size(0)
        encoder_outputs, h = self.encoder(x)
        c = torch.zeros(b, self.dec_hid_dim, device=x.device)
        y_prev = torch.zeros(b, self.output_dim, device=x.device)
        outputs = []
        attentions = []
        for _ in range(self.max_len):
            a = self.attention(h, encoder_outputs)  # [b, src len]
            attentions.append(a)
            weighted = torch.bmm(a.unsqueeze(1), encoder_outputs).squeeze(1)  # [b, enc hid dim * 2]
            h, c = self.cell(torch.cat((y_prev, weighted), dim=1), (h, c))
            pred = self.fc_out(torch.cat((self.dropout(h), weighted, y_prev), dim=1))
            outputs.append(pred)
            y_prev = pred  # no teacher forcing at inference
        return torch.stack(outputs, dim=1), torch.stack(attentions, dim=1)


def _forecast_inputs(batch, length):
    g = gen("seq2seq_bahdanau_forecast", batch, length)
    return (randn(g, batch, length, 8),)


# ---------------------------------------------------------------------------------------------------------------
# 6b. Token NMT: GRU encoder, GRUCell decoder with Luong "general" attention + input feeding, greedy decoding
# ---------------------------------------------------------------------------------------------------------------


class LuongAttention(nn.Module):  # Luong et al. 2015 "general" score (OpenNMT-py GlobalAttention flavour)
    def __init__(self, dim):
        super().__init__()
        self.linear_in = nn.Linear(dim, dim, bias=False)
        self.linear_out = nn.Linear(dim * 2, dim, bias=False)

    def forward(self, query, memory_bank, mask=None):
        # query: [b, dim], memory_bank: [b, src_len, dim]
        align = torch.bmm(memory_bank, self.linear_in(query).unsqueeze(2)).squeeze(2)  # [b, src_len]
        if mask is not None:
            align = align.masked_fill(mask, -1e9)
        align_vectors = F.softmax(align, dim=-1)
        c = torch.einsum("bs,bsd->bd", align_vectors, memory_bank)
        attn_h = torch.tanh(self.linear_out(torch.cat([c, query], dim=1)))
        return attn_h, align_vectors


class GreedyNMT(nn.Module):  # minimal Luong-attention NMT (OpenNMT-py style) with greedy search
    def __init__(self, src_vocab=50, tgt_vocab=40, emb_dim=32, hidden=32, num_layers=2, max_len=10, pad_idx=0,
                 sos_idx=1, dropout=0.3, share_decoder_embeddings=True):
        super().__init__()
        self.hidden = hidden
        self.max_len = max_len
        self.pad_idx = pad_idx
        self.sos_idx = sos_idx
        self.src_emb = nn.Embedding(src_vocab, emb_dim, padding_idx=pad_idx)
        self.tgt_emb = nn.Embedding(tgt_vocab, emb_dim, padding_idx=pad_idx)
        self.encoder = nn.GRU(emb_dim, hidden, num_layers=num_layers, batch_first=True, dropout=dropout)
        self.decoder_cell = nn.GRUCell(emb_dim + hidden, hidden)
        self.attn = LuongAttention(hidden)
        self.generator = nn.Linear(hidden, tgt_vocab)
        if share_decoder_embeddings:  # OpenNMT-py -share_decoder_embeddings
            self.generator.weight = self.tgt_emb.weight
        self.dropout = nn.Dropout(dropout)

    def forward(self, src):
        b = src.size(0)
        src_mask = src.eq(self.pad_idx)  # [b, src_len]
        memory_bank, enc_state = self.encoder(self.dropout(self.src_emb(src)))
        h = enc_state[-1]
        input_feed = torch.zeros(b, self.hidden, device=src.device)
        tok = torch.full((b,), self.sos_idx, dtype=torch.long, device=src.device)
        all_logits, all_tokens = [], []
        for _ in range(self.max_len):
            emb = self.tgt_emb(tok)
            h = self.decoder_cell(torch.cat([emb, input_feed], dim=-1), h)
            attn_h, _ = self.attn(h, memory_bank, src_mask)
            input_feed = attn_h
            logits = F.log_softmax(self.generator(self.dropout(attn_h)), dim=-1)
            tok = logits.argmax(dim=-1)
            all_logits.append(logits)
            all_tokens.append(tok)
        return torch.stack(all_logits, dim=1), torch.stack(all_tokens, dim=1)


def _nmt_inputs(batch, length):
    g = gen("seq2seq_luong_greedy", batch, length)
    lengths = random_lengths(g, batch, length)
    return (padded_tokens(g, lengths, length, 50),)


ENTRIES = [
    Entry("seq2seq_bahdanau_forecast", seeded(AttnForecaster), _forecast_inputs, ({0: "B", 1: "T"},), "seq2seq",
          ("bigru_encoder", "h_n_concat", "lstmcell", "python_loop_fixed", "bahdanau_attention", "repeat", "bmm",
           "softmax", "autoregressive_feedback", "zeros_from_batch", "stack")),
    Entry("seq2seq_luong_greedy", seeded(GreedyNMT), _nmt_inputs, ({0: "B", 1: "T"},), "seq2seq",
          ("embedding", "gru_2layer", "grucell", "python_loop_fixed", "luong_attention", "bmm", "einsum",
           "masked_fill", "input_feeding", "argmax_feedback", "full_like_tokens", "stack", "int64_tokens")),
]
