"""Speech models: DeepSpeech2, GE2E / d-vector speaker encoders, an RNN-T style encoder, a Tacotron 2 decoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import Entry, gen, randn, random_lengths, seeded

# ---------------------------------------------------------------------------------------------------------------
# 3. DeepSpeech2
# ---------------------------------------------------------------------------------------------------------------


class SequenceWise(nn.Module):  # SeanNaren/deepspeech.pytorch
    def __init__(self, module):
        """
        Collapses input of dim T*N*H to (T*N)*H, and applies to a module.
        Allows handling of variable sequence lengths and minibatch sizes.
        :param module: Module to apply input to.
        """
        super().__init__()
        self.module = module

    def forward(self, x):
        t, n = x.size(0), x.size(1)
        x = x.view(t * n, -1)
        x = self.module(x)
        x = x.view(t, n, -1)
        return x

    def __repr__(self):
        tmpstr = self.__class__.__name__ + " (\n"
        tmpstr += self.module.__repr__()
        tmpstr += ")"
        return tmpstr


class InferenceBatchSoftmax(nn.Module):  # SeanNaren/deepspeech.pytorch
    def forward(self, input_):
        if not self.training:
            return F.softmax(input_, dim=-1)
        else:
            return input_


class BatchRNN(nn.Module):  # SeanNaren/deepspeech.pytorch (BN applied over (N, C, T) via permute)
    def __init__(self, input_size, hidden_size, rnn_type=nn.LSTM, bidirectional=False, batch_norm=True):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.batch_norm = nn.BatchNorm1d(input_size) if batch_norm else None
        self.rnn = rnn_type(input_size=input_size, hidden_size=hidden_size, bidirectional=bidirectional, bias=True)
        self.num_directions = 2 if bidirectional else 1

    def flatten_parameters(self):
        self.rnn.flatten_parameters()

    def forward(self, x):
        # x: T x N x H
        if self.batch_norm is not None:
            x = self.batch_norm(x.permute(1, 2, 0)).permute(2, 0, 1)
        x, h = self.rnn(x)
        if self.bidirectional:
            x = x.view(x.size(0), x.size(1), 2, -1).sum(2).view(x.size(0), x.size(1), -1)  # (TxNxH*2) -> (TxNxH) by sum
        return x


class DeepSpeech(nn.Module):  # SeanNaren/deepspeech.pytorch DeepSpeech (no MaskConv, GRU cells)
    def __init__(self, n_feats=40, rnn_hidden_size=32, nb_layers=3, n_class=29, bidirectional=True):
        super().__init__()
        self.bidirectional = bidirectional
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=(11, 5), stride=(2, 2), padding=(5, 2)),
            nn.BatchNorm2d(16),
            nn.Hardtanh(0, 20, inplace=True),
            nn.Conv2d(16, 16, kernel_size=(11, 5), stride=(2, 1), padding=(5, 2)),
            nn.BatchNorm2d(16),
            nn.Hardtanh(0, 20, inplace=True),
        )
        # Based on above convolutions and spectrogram size using conv formula (W - F + 2P)/ S+1
        rnn_input_size = int(math.floor((n_feats + 2 * 5 - 11) / 2) + 1)
        rnn_input_size = int(math.floor(rnn_input_size + 2 * 5 - 11) / 2 + 1)
        rnn_input_size *= 16

        self.rnns = nn.Sequential(
            BatchRNN(input_size=rnn_input_size, hidden_size=rnn_hidden_size, rnn_type=nn.GRU,
                     bidirectional=self.bidirectional, batch_norm=False),
            *(
                BatchRNN(input_size=rnn_hidden_size, hidden_size=rnn_hidden_size, rnn_type=nn.GRU,
                         bidirectional=self.bidirectional)
                for x in range(nb_layers - 1)
            ),
        )

        fully_connected = nn.Sequential(
            nn.BatchNorm1d(rnn_hidden_size),
            nn.Linear(rnn_hidden_size, n_class, bias=False),
        )
        self.fc = nn.Sequential(SequenceWise(fully_connected))
        self.inference_softmax = InferenceBatchSoftmax()

    def forward(self, x, lengths):
        lengths = lengths.int()
        output_lengths = self.get_seq_lens(lengths)
        x = self.conv(x)

        sizes = x.size()
        x = x.view(sizes[0], sizes[1] * sizes[2], sizes[3])  # Collapse feature dimension
        x = x.transpose(1, 2).transpose(0, 1).contiguous()  # TxNxH

        for rnn in self.rnns:
            x = rnn(x)

        x = self.fc(x)
        x = x.transpose(0, 1)
        # identity in training mode, softmax in eval mode
        x = self.inference_softmax(x)
        return x, output_lengths

    def get_seq_lens(self, input_length):
        """
        Given a 1D Tensor or Variable containing integer sequence lengths, return a 1D tensor or variable
        containing the size sequences that will be output by the network.
        :param input_length: 1D Tensor
        :return: 1D Tensor scaled by model
        """
        seq_len = input_length
        for m in self.conv.modules():
            if isinstance(m, nn.modules.conv.Conv2d):
                seq_len = (seq_len + 2 * m.padding[1] - m.dilation[1] * (m.kernel_size[1] - 1) - 1) // m.stride[1] + 1
        return seq_len.int()


def _ds2_inputs(batch, length):
    g = gen("deepspeech2", batch, length)
    return randn(g, batch, 1, 40, length), random_lengths(g, batch, length, descending=True)


# ---------------------------------------------------------------------------------------------------------------
# 4. Speaker encoders
# ---------------------------------------------------------------------------------------------------------------


class SpeakerEncoder(nn.Module):  # CorentinJ/Real-Time-Voice-Cloning encoder/model.py (GE2E)
    def __init__(self, mel_n_channels=40, model_hidden_size=32, model_embedding_size=32, model_num_layers=3):
        super().__init__()
        # Network defition
        self.lstm = nn.LSTM(input_size=mel_n_channels,
                            hidden_size=model_hidden_size,
                            num_layers=model_num_layers,
                            batch_first=True)
        self.linear = nn.Linear(in_features=model_hidden_size,
                                out_features=model_embedding_size)
        self.relu = torch.nn.ReLU()

        # Cosine similarity scaling (with fixed initial parameter values)
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, utterances, hidden_init=None):
        """
        Computes the embeddings of a batch of utterance spectrograms.

        :param utterances: batch of mel-scale filterbanks of same duration as a tensor of shape
        (batch_size, n_frames, n_channels)
        :param hidden_init: initial hidden state of the LSTM as a tensor of shape (num_layers,
        batch_size, hidden_size). Will default to a tensor of zeros if None.
        :return: the embeddings as a tensor of shape (batch_size, embedding_size)
        """
        # Pass the input through the LSTM layers and retrieve all outputs, the final hidden state
        # and the final cell state.
        out, (hidden, cell) = self.lstm(utterances, hidden_init)

        # We take only the hidden state of the last layer
        embeds_raw = self.relu(self.linear(hidden[-1]))

        # L2-normalize it
        embeds = embeds_raw / (torch.norm(embeds_raw, dim=1, keepdim=True) + 1e-5)

        return embeds


class DVectorLSTMP(nn.Module):  # d-vector (Wan et al. GE2E paper) with projected LSTMs, mean-pooled, F.normalize
    def __init__(self, n_mels=40, hidden=48, proj=24, num_layers=2, emb_dim=32):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden, num_layers=num_layers, batch_first=True, proj_size=proj)
        self.embedding = nn.Linear(proj, emb_dim)

    def forward(self, mels):
        x, _ = self.lstm(mels)  # (B, T, proj)
        x = self.embedding(x)
        x = x.mean(dim=1)
        return F.normalize(x, p=2, dim=1)


def _speaker_inputs(batch, length):
    g = gen("speaker_encoder", batch, length)
    return (randn(g, batch, length, 40),)


# ---------------------------------------------------------------------------------------------------------------
# 12. RNN-T style encoder: LayerNorm + residual GRUs, frame stacking time reduction
# ---------------------------------------------------------------------------------------------------------------


class _TimeReduction(nn.Module):  # torchaudio.models.rnnt._TimeReduction
    r"""Coalesces frames along the time dimension into a fewer number of frames.

    Args:
        stride (int): number of frames to merge for each output frame.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, input: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = input.shape
        num_frames = T - (T % self.stride)
        input = input[:, :num_frames, :]
        lengths = lengths.div(self.stride, rounding_mode="trunc")
        T_max = num_frames // self.stride

        output = input.reshape(B, T_max, D * self.stride)
        output = output.contiguous()
        return output, lengths


class ResidualGRULayer(nn.Module):  # pre-LN residual GRU layer as in many streaming transducer encoders
    def __init__(self, d_model, dropout=0.1):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.rnn = nn.GRU(d_model, d_model, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        residual = x
        x = self.norm(x)
        x, _ = self.rnn(x)
        x = self.dropout(x)
        return x + residual


class TransducerEncoder(nn.Module):  # RNN-T encoder (He et al. 2019 streaming RNN-T: time reduction mid-stack)
    def __init__(self, input_dim=24, d_model=32, n_pre=2, n_post=2, out_dim=40):
        super().__init__()
        self.input_stack = _TimeReduction(2)
        self.input_linear = nn.Linear(input_dim * 2, d_model)
        self.pre_layers = nn.ModuleList([ResidualGRULayer(d_model) for _ in range(n_pre)])
        self.time_reduction = _TimeReduction(2)
        self.reduce_proj = nn.Linear(d_model * 2, d_model)
        self.post_layers = nn.ModuleList([ResidualGRULayer(d_model) for _ in range(n_post)])
        self.output_linear = nn.Linear(d_model, out_dim)
        self.layer_norm = nn.LayerNorm(out_dim)

    def forward(self, input, lengths):
        x, lengths = self.input_stack(input, lengths)
        x = self.input_linear(x)
        for layer in self.pre_layers:
            x = layer(x)
        x, lengths = self.time_reduction(x, lengths)
        x = self.reduce_proj(x)
        for layer in self.post_layers:
            x = layer(x)
        x = self.layer_norm(self.output_linear(x))
        return x, lengths


def _rnnt_inputs(batch, length):
    g = gen("rnnt_encoder", batch, length)
    return randn(g, batch, length, 24), random_lengths(g, batch, length, low=4)


# ---------------------------------------------------------------------------------------------------------------
# 11. Tacotron 2 decoder (NVIDIA/tacotron2 model.py), inference loop with a fixed step budget
# ---------------------------------------------------------------------------------------------------------------


class LinearNorm(torch.nn.Module):  # NVIDIA/tacotron2 layers.py
    def __init__(self, in_dim, out_dim, bias=True, w_init_gain="linear"):
        super().__init__()
        self.linear_layer = torch.nn.Linear(in_dim, out_dim, bias=bias)

        torch.nn.init.xavier_uniform_(self.linear_layer.weight, gain=torch.nn.init.calculate_gain(w_init_gain))

    def forward(self, x):
        return self.linear_layer(x)


class ConvNorm(torch.nn.Module):  # NVIDIA/tacotron2 layers.py
    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=None, dilation=1, bias=True,
                 w_init_gain="linear"):
        super().__init__()
        if padding is None:
            assert kernel_size % 2 == 1
            padding = int(dilation * (kernel_size - 1) / 2)

        self.conv = torch.nn.Conv1d(in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                                    padding=padding, dilation=dilation, bias=bias)

        torch.nn.init.xavier_uniform_(self.conv.weight, gain=torch.nn.init.calculate_gain(w_init_gain))

    def forward(self, signal):
        conv_signal = self.conv(signal)
        return conv_signal


class LocationLayer(nn.Module):  # NVIDIA/tacotron2 model.py
    def __init__(self, attention_n_filters, attention_kernel_size, attention_dim):
        super().__init__()
        padding = int((attention_kernel_size - 1) / 2)
        self.location_conv = ConvNorm(2, attention_n_filters, kernel_size=attention_kernel_size, padding=padding,
                                      bias=False, stride=1, dilation=1)
        self.location_dense = LinearNorm(attention_n_filters, attention_dim, bias=False, w_init_gain="tanh")

    def forward(self, attention_weights_cat):
        processed_attention = self.location_conv(attention_weights_cat)
        processed_attention = processed_attention.transpose(1, 2)
        processed_attention = self.location_dense(processed_attention)
        return processed_attention


class Attention(nn.Module):  # NVIDIA/tacotron2 location-sensitive attention
    def __init__(self, attention_rnn_dim, embedding_dim, attention_dim, attention_location_n_filters,
                 attention_location_kernel_size):
        super().__init__()
        self.query_layer = LinearNorm(attention_rnn_dim, attention_dim, bias=False, w_init_gain="tanh")
        self.memory_layer = LinearNorm(embedding_dim, attention_dim, bias=False, w_init_gain="tanh")
        self.v = LinearNorm(attention_dim, 1, bias=False)
        self.location_layer = LocationLayer(attention_location_n_filters, attention_location_kernel_size,
                                            attention_dim)
        self.score_mask_value = -float("inf")

    def get_alignment_energies(self, query, processed_memory, attention_weights_cat):
        """
        PARAMS
        ------
        query: decoder output (batch, n_mel_channels * n_frames_per_step)
        processed_memory: processed encoder outputs (B, T_in, attention_dim)
        attention_weights_cat: cumulative and prev. att weights (B, 2, max_time)

        RETURNS
        -------
        alignment (batch, max_time)
        """

        processed_query = self.query_layer(query.unsqueeze(1))
        processed_attention_weights = self.location_layer(attention_weights_cat)
        energies = self.v(torch.tanh(processed_query + processed_attention_weights + processed_memory))

        energies = energies.squeeze(-1)
        return energies

    def forward(self, attention_hidden_state, memory, processed_memory, attention_weights_cat, mask):
        """
        PARAMS
        ------
        attention_hidden_state: attention rnn last output
        memory: encoder outputs
        processed_memory: processed encoder outputs
        attention_weights_cat: previous and cummulative attention weights
        mask: binary mask for padded data
        """
        alignment = self.get_alignment_energies(attention_hidden_state, processed_memory, attention_weights_cat)

        if mask is not None:
            alignment = alignment.masked_fill(mask, self.score_mask_value)

        attention_weights = F.softmax(alignment, dim=1)
        attention_context = torch.bmm(attention_weights.unsqueeze(1), memory)
        attention_context = attention_context.squeeze(1)

        return attention_context, attention_weights


class Prenet(nn.Module):  # NVIDIA/tacotron2 (original keeps dropout on at inference; here it follows self.training)
    def __init__(self, in_dim, sizes):
        super().__init__()
        in_sizes = [in_dim] + sizes[:-1]
        self.layers = nn.ModuleList(
            [LinearNorm(in_size, out_size, bias=False) for (in_size, out_size) in zip(in_sizes, sizes, strict=True)]
        )

    def forward(self, x):
        for linear in self.layers:
            x = F.dropout(F.relu(linear(x)), p=0.5, training=self.training)
        return x


class Postnet(nn.Module):  # NVIDIA/tacotron2 Postnet: conv1d + batchnorm1d + tanh stack
    def __init__(self, n_mel_channels, postnet_embedding_dim, postnet_kernel_size, postnet_n_convolutions):
        super().__init__()
        self.convolutions = nn.ModuleList()

        self.convolutions.append(
            nn.Sequential(
                ConvNorm(n_mel_channels, postnet_embedding_dim, kernel_size=postnet_kernel_size, stride=1,
                         padding=int((postnet_kernel_size - 1) / 2), dilation=1, w_init_gain="tanh"),
                nn.BatchNorm1d(postnet_embedding_dim),
            )
        )

        for _ in range(1, postnet_n_convolutions - 1):
            self.convolutions.append(
                nn.Sequential(
                    ConvNorm(postnet_embedding_dim, postnet_embedding_dim, kernel_size=postnet_kernel_size,
                             stride=1, padding=int((postnet_kernel_size - 1) / 2), dilation=1, w_init_gain="tanh"),
                    nn.BatchNorm1d(postnet_embedding_dim),
                )
            )

        self.convolutions.append(
            nn.Sequential(
                ConvNorm(postnet_embedding_dim, n_mel_channels, kernel_size=postnet_kernel_size, stride=1,
                         padding=int((postnet_kernel_size - 1) / 2), dilation=1, w_init_gain="linear"),
                nn.BatchNorm1d(n_mel_channels),
            )
        )

    def forward(self, x):
        for i in range(len(self.convolutions) - 1):
            x = F.dropout(torch.tanh(self.convolutions[i](x)), 0.5, self.training)
        x = F.dropout(self.convolutions[-1](x), 0.5, self.training)

        return x


class Tacotron2Decoder(nn.Module):  # NVIDIA/tacotron2 Decoder.inference (+ Postnet), fixed max_decoder_steps
    def __init__(self, n_mel_channels=16, n_frames_per_step=1, encoder_embedding_dim=24, attention_rnn_dim=32,
                 decoder_rnn_dim=32, prenet_dim=16, max_decoder_steps=10, gate_threshold=0.5,
                 p_attention_dropout=0.1, p_decoder_dropout=0.1, attention_dim=16, attention_location_n_filters=8,
                 attention_location_kernel_size=5, postnet_embedding_dim=16, postnet_kernel_size=5,
                 postnet_n_convolutions=3):
        super().__init__()
        self.n_mel_channels = n_mel_channels
        self.n_frames_per_step = n_frames_per_step
        self.encoder_embedding_dim = encoder_embedding_dim
        self.attention_rnn_dim = attention_rnn_dim
        self.decoder_rnn_dim = decoder_rnn_dim
        self.prenet_dim = prenet_dim
        self.max_decoder_steps = max_decoder_steps
        self.gate_threshold = gate_threshold
        self.p_attention_dropout = p_attention_dropout
        self.p_decoder_dropout = p_decoder_dropout

        self.prenet = Prenet(n_mel_channels * n_frames_per_step, [prenet_dim, prenet_dim])

        self.attention_rnn = nn.LSTMCell(prenet_dim + encoder_embedding_dim, attention_rnn_dim)

        self.attention_layer = Attention(attention_rnn_dim, encoder_embedding_dim, attention_dim,
                                         attention_location_n_filters, attention_location_kernel_size)

        self.decoder_rnn = nn.LSTMCell(attention_rnn_dim + encoder_embedding_dim, decoder_rnn_dim, 1)

        self.linear_projection = LinearNorm(decoder_rnn_dim + encoder_embedding_dim,
                                            n_mel_channels * n_frames_per_step)

        self.gate_layer = LinearNorm(decoder_rnn_dim + encoder_embedding_dim, 1, bias=True, w_init_gain="sigmoid")

        self.postnet = Postnet(n_mel_channels, postnet_embedding_dim, postnet_kernel_size, postnet_n_convolutions)

    def get_go_frame(self, memory):
        """Gets all zeros frames to use as first decoder input"""
        B = memory.size(0)
        decoder_input = memory.new_zeros(B, self.n_mel_channels * self.n_frames_per_step)
        return decoder_input

    def initialize_decoder_states(self, memory, mask):
        """Initializes attention rnn states, decoder rnn states, attention weights, attention cumulative weights,
        attention context, stores memory and stores processed memory"""
        B = memory.size(0)
        MAX_TIME = memory.size(1)

        self.attention_hidden = memory.new_zeros(B, self.attention_rnn_dim)
        self.attention_cell = memory.new_zeros(B, self.attention_rnn_dim)

        self.decoder_hidden = memory.new_zeros(B, self.decoder_rnn_dim)
        self.decoder_cell = memory.new_zeros(B, self.decoder_rnn_dim)

        self.attention_weights = memory.new_zeros(B, MAX_TIME)
        self.attention_weights_cum = memory.new_zeros(B, MAX_TIME)
        self.attention_context = memory.new_zeros(B, self.encoder_embedding_dim)

        self.memory = memory
        self.processed_memory = self.attention_layer.memory_layer(memory)
        self.mask = mask

    def parse_decoder_outputs(self, mel_outputs, gate_outputs, alignments):
        # (T_out, B) -> (B, T_out)
        alignments = torch.stack(alignments).transpose(0, 1)
        # (T_out, B) -> (B, T_out)
        gate_outputs = torch.stack(gate_outputs).transpose(0, 1)
        gate_outputs = gate_outputs.contiguous()
        # (T_out, B, n_mel_channels) -> (B, T_out, n_mel_channels)
        mel_outputs = torch.stack(mel_outputs).transpose(0, 1).contiguous()
        # decouple frames per step
        mel_outputs = mel_outputs.view(mel_outputs.size(0), -1, self.n_mel_channels)
        # (B, T_out, n_mel_channels) -> (B, n_mel_channels, T_out)
        mel_outputs = mel_outputs.transpose(1, 2)

        return mel_outputs, gate_outputs, alignments

    def decode(self, decoder_input):
        cell_input = torch.cat((decoder_input, self.attention_context), -1)
        self.attention_hidden, self.attention_cell = self.attention_rnn(
            cell_input, (self.attention_hidden, self.attention_cell)
        )
        self.attention_hidden = F.dropout(self.attention_hidden, self.p_attention_dropout, self.training)

        attention_weights_cat = torch.cat(
            (self.attention_weights.unsqueeze(1), self.attention_weights_cum.unsqueeze(1)), dim=1
        )
        self.attention_context, self.attention_weights = self.attention_layer(
            self.attention_hidden, self.memory, self.processed_memory, attention_weights_cat, self.mask
        )

        self.attention_weights_cum += self.attention_weights
        decoder_input = torch.cat((self.attention_hidden, self.attention_context), -1)
        self.decoder_hidden, self.decoder_cell = self.decoder_rnn(
            decoder_input, (self.decoder_hidden, self.decoder_cell)
        )
        self.decoder_hidden = F.dropout(self.decoder_hidden, self.p_decoder_dropout, self.training)

        decoder_hidden_attention_context = torch.cat((self.decoder_hidden, self.attention_context), dim=1)
        decoder_output = self.linear_projection(decoder_hidden_attention_context)

        gate_prediction = self.gate_layer(decoder_hidden_attention_context)
        return decoder_output, gate_prediction, self.attention_weights

    def forward(self, memory, memory_lengths=None):
        """Decoder inference with a fixed step budget (the original stops on the gate; that is data dependent).

        PARAMS
        ------
        memory: Encoder outputs (B, T_enc, D)
        memory_lengths: optional encoder lengths, masks padded encoder frames

        RETURNS
        -------
        mel_outputs, mel_outputs_postnet, gate_outputs, alignments
        """
        if memory_lengths is not None:
            ids = torch.arange(0, memory.size(1), device=memory_lengths.device, dtype=torch.long)
            mask = ~(ids < memory_lengths.unsqueeze(1)).bool()
        else:
            mask = None
        decoder_input = self.get_go_frame(memory)

        self.initialize_decoder_states(memory, mask=mask)

        mel_outputs, gate_outputs, alignments = [], [], []
        for _ in range(self.max_decoder_steps):
            decoder_input = self.prenet(decoder_input)
            mel_output, gate_output, alignment = self.decode(decoder_input)

            mel_outputs += [mel_output.squeeze(1)]
            gate_outputs += [gate_output]
            alignments += [alignment]

            decoder_input = mel_output

        mel_outputs, gate_outputs, alignments = self.parse_decoder_outputs(mel_outputs, gate_outputs, alignments)
        mel_outputs_postnet = self.postnet(mel_outputs)
        mel_outputs_postnet = mel_outputs + mel_outputs_postnet
        return mel_outputs, mel_outputs_postnet, gate_outputs, alignments


def _tacotron_inputs(batch, length):
    g = gen("tacotron2_decoder", batch, length)
    return (randn(g, batch, length, 24),)


def _tacotron_masked_inputs(batch, length):
    g = gen("tacotron2_decoder_masked", batch, length)
    lengths = random_lengths(g, batch, length)
    memory = randn(g, batch, length, 24)
    memory = memory.masked_fill((torch.arange(length)[None, :] >= lengths[:, None]).unsqueeze(-1), 0.0)
    return memory, lengths


ENTRIES = [
    Entry("deepspeech2", seeded(DeepSpeech), _ds2_inputs, ({0: "B", 3: "T"}, {0: "B"}), "speech",
          ("conv2d_stride", "batchnorm2d", "hardtanh", "view_collapse", "transpose", "bigru_seq_first",
           "batchnorm1d_permute", "bidir_sum", "sequencewise", "softmax", "int_length_arith")),
    Entry("ge2e_speaker_encoder", seeded(SpeakerEncoder), _speaker_inputs, ({0: "B", 1: "T"},), "speech",
          ("lstm_3layer", "h_n_last", "linear", "relu", "torch_norm", "l2_normalize")),
    Entry("dvector_lstmp", seeded(DVectorLSTMP), _speaker_inputs, ({0: "B", 1: "T"},), "speech",
          ("lstm_proj_size", "mean_time", "f_normalize")),
    Entry("rnnt_encoder", seeded(TransducerEncoder), _rnnt_inputs, ({0: "B", 1: "T"}, {0: "B"}), "speech",
          ("time_reduction_reshape", "slice_trunc", "int_div", "layernorm", "gru", "residual"), min_length=4),
    Entry("tacotron2_decoder", seeded(Tacotron2Decoder), _tacotron_inputs, ({0: "B", 1: "T"},), "speech",
          ("python_loop_fixed", "lstmcell", "location_attention", "conv1d", "bmm", "softmax", "module_state_attrs",
           "inplace_add", "prenet", "postnet", "batchnorm1d", "tanh", "stack")),
    Entry("tacotron2_decoder_masked", seeded(Tacotron2Decoder), _tacotron_masked_inputs, ({0: "B", 1: "T"}, {0: "B"}),
          "speech",
          ("python_loop_fixed", "lstmcell", "location_attention", "conv1d", "bmm", "softmax", "masked_fill_neg_inf",
           "length_mask", "module_state_attrs", "inplace_add", "postnet", "stack")),
]
