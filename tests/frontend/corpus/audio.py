"""Audio models: sound-event detection, keyword spotting, enhancement/separation, TCN front-ends."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init
from torch.nn.utils.parametrizations import weight_norm

from .common import Entry, gen, randn, seeded

# ---------------------------------------------------------------------------------------------------------------
# 1. CRNN for sound event detection (DCASE task 4 baseline)
# ---------------------------------------------------------------------------------------------------------------


class GLU(nn.Module):  # turpaultn/DCASE2019_task4 baseline: gated linear unit across channels
    def __init__(self, input_num):
        super().__init__()
        self.sigmoid = nn.Sigmoid()
        self.linear = nn.Linear(input_num, input_num)

    def forward(self, x):
        lin = self.linear(x.permute(0, 2, 3, 1))
        lin = lin.permute(0, 3, 1, 2)
        sig = self.sigmoid(x)
        res = lin * sig
        return res


class CNN(nn.Module):  # DCASE2019 task 4 baseline CNN block stack (conv / BN / GLU / pool over frequency)
    def __init__(
        self,
        n_in_channel=1,
        activation="glu",
        conv_dropout=0.0,
        kernel_size=(3, 3, 3),
        padding=(1, 1, 1),
        stride=(1, 1, 1),
        nb_filters=(16, 32, 32),
        pooling=((1, 4), (1, 4), (1, 2)),
    ):
        super().__init__()
        self.nb_filters = nb_filters
        cnn = nn.Sequential()

        def conv(i, batchNormalization=False, dropout=None, activ="relu"):
            nIn = n_in_channel if i == 0 else nb_filters[i - 1]
            nOut = nb_filters[i]
            cnn.add_module(f"conv{i}", nn.Conv2d(nIn, nOut, kernel_size[i], stride[i], padding[i]))
            if batchNormalization:
                cnn.add_module(f"batchnorm{i}", nn.BatchNorm2d(nOut, eps=0.001, momentum=0.99))
            if activ.lower() == "leakyrelu":
                cnn.add_module(f"relu{i}", nn.LeakyReLU(0.2))
            elif activ.lower() == "relu":
                cnn.add_module(f"relu{i}", nn.ReLU())
            elif activ.lower() == "glu":
                cnn.add_module(f"glu{i}", GLU(nOut))
            if dropout is not None:
                cnn.add_module(f"dropout{i}", nn.Dropout(dropout))

        batch_norm = True
        # last block uses plain ReLU, the others the GLU gate
        for i in range(len(nb_filters)):
            conv(i, batch_norm, conv_dropout, activ=activation if i < len(nb_filters) - 1 else "relu")
            cnn.add_module(f"pooling{i}", nn.MaxPool2d(pooling[i]))

        self.cnn = cnn

    def forward(self, x):
        # input size : (batch_size, n_channels, n_frames, n_freq)
        x = self.cnn(x)
        return x


class BidirectionalGRU(nn.Module):  # DCASE baseline RNN wrapper
    def __init__(self, n_in, n_hidden, dropout=0, num_layers=1):
        super().__init__()
        self.rnn = nn.GRU(n_in, n_hidden, bidirectional=True, dropout=dropout, batch_first=True, num_layers=num_layers)

    def forward(self, input_feat):
        recurrent, _ = self.rnn(input_feat)
        return recurrent


class SEDCRNN(nn.Module):  # DCASE2019 task 4 baseline CRNN: strong (frame) + weak (clip) predictions
    def __init__(self, n_in_channel=1, nclass=10, attention=True, activation="glu", dropout=0.0, n_RNN_cell=32,
                 n_layers_RNN=1, n_mels=64, **kwargs):
        super().__init__()
        self.attention = attention
        self.cnn = CNN(n_in_channel, activation, dropout, **kwargs)
        pool_f = 4 * 4 * 2
        nb_in = self.cnn.nb_filters[-1] * (n_mels // pool_f)
        self.rnn = BidirectionalGRU(nb_in, n_RNN_cell, dropout=dropout, num_layers=n_layers_RNN)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(n_RNN_cell * 2, nclass)
        self.sigmoid = nn.Sigmoid()
        if self.attention:
            self.dense_softmax = nn.Linear(n_RNN_cell * 2, nclass)
            self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        # input size : (batch_size, n_frames, n_freq) -> add channel dim
        x = x.unsqueeze(1)
        # conv features
        x = self.cnn(x)
        bs, chan, frames, freq = x.size()
        if freq != 1:
            x = x.permute(0, 2, 1, 3)
            x = x.contiguous().view(bs, frames, chan * freq)
        else:
            x = x.squeeze(-1)
            x = x.permute(0, 2, 1)  # [bs, frames, chan]

        # rnn features
        x = self.rnn(x)
        x = self.dropout(x)
        strong = self.dense(x)  # [bs, frames, nclass]
        strong = self.sigmoid(strong)
        if self.attention:
            sof = self.dense_softmax(x)  # [bs, frames, nclass]
            sof = self.softmax(sof)
            sof = torch.clamp(sof, min=1e-7, max=1)
            weak = (strong * sof).sum(1) / sof.sum(1)  # [bs, nclass]
        else:
            weak = strong.mean(1)
        return strong, weak


def _sed_inputs(batch, length):
    g = gen("sed_crnn", batch, length)
    return (randn(g, batch, length, 64),)


# ---------------------------------------------------------------------------------------------------------------
# 14. Keyword spotting: conv front-end + GRU + attention pooling
# ---------------------------------------------------------------------------------------------------------------


class AttentionPooling(nn.Module):  # soft attention pooling over time (common in KWS / speaker-ID repos)
    def __init__(self, in_dim):
        super().__init__()
        self.W = nn.Linear(in_dim, 1)
        nn.init.xavier_uniform_(self.W.weight, gain=nn.init.calculate_gain("tanh"))

    def forward(self, batch_rep):
        # batch_rep : size (N, T, H)
        att_logits = self.W(batch_rep).squeeze(-1)
        att_w = F.softmax(att_logits, dim=-1).unsqueeze(-1)
        utter_rep = torch.sum(batch_rep * att_w, dim=1)
        return utter_rep, att_w


class KWSCRNN(nn.Module):  # "Convolutional Recurrent Neural Networks for Small-Footprint KWS" style (Arik et al.)
    def __init__(self, n_mfcc=40, n_classes=12, hidden=32):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=(3, 3), padding=(1, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = nn.PReLU(16)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=(3, 3), stride=(1, 2), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.act2 = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        self.freq_pool = nn.AdaptiveAvgPool2d((None, 1))
        self.gru = nn.GRU(32, hidden, num_layers=2, batch_first=True)
        self.pool = AttentionPooling(hidden)
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, mfcc):
        # mfcc: (batch, time, n_mfcc)
        x = mfcc.unsqueeze(1)  # (B, 1, T, F)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.freq_pool(x)  # (B, C, T, 1)
        x = x.squeeze(-1).transpose(1, 2)  # (B, T, C)
        x, _ = self.gru(x)
        x, att = self.pool(x)
        return self.fc(x), att.squeeze(-1)


def _kws_inputs(batch, length):
    g = gen("kws_crnn", batch, length)
    return (randn(g, batch, length, 40),)


# ---------------------------------------------------------------------------------------------------------------
# 21. RNNoise-style denoiser / VAD
# ---------------------------------------------------------------------------------------------------------------


class RNNoise(nn.Module):  # xiph/rnnoise training model (rnn_train.py) ported to PyTorch
    def __init__(self, input_dim=42, n_bands=22, dense=24, vad_units=24, noise_units=32, denoise_units=48):
        super().__init__()
        self.input_dense = nn.Linear(input_dim, dense)
        self.vad_gru = nn.GRU(dense, vad_units, batch_first=True)
        self.vad_output = nn.Linear(vad_units, 1)
        self.noise_gru = nn.GRU(dense + vad_units + input_dim, noise_units, batch_first=True)
        self.denoise_gru = nn.GRU(vad_units + noise_units + input_dim, denoise_units, batch_first=True)
        self.denoise_output = nn.Linear(denoise_units, n_bands)

    def forward(self, main_input):
        tmp = torch.tanh(self.input_dense(main_input))
        vad_gru, _ = self.vad_gru(tmp)
        vad_gru = F.relu(vad_gru)  # keras model used relu activations inside the GRU; approximated here
        vad_output = torch.sigmoid(self.vad_output(vad_gru))
        noise_input = torch.cat([tmp, vad_gru, main_input], dim=-1)
        noise_gru, _ = self.noise_gru(noise_input)
        noise_gru = F.relu(noise_gru)
        denoise_input = torch.cat([vad_gru, noise_gru, main_input], dim=-1)
        denoise_gru, _ = self.denoise_gru(denoise_input)
        denoise_output = torch.sigmoid(self.denoise_output(denoise_gru))
        return denoise_output, vad_output


def _rnnoise_inputs(batch, length):
    g = gen("rnnoise", batch, length)
    return (randn(g, batch, length, 42),)


# ---------------------------------------------------------------------------------------------------------------
# 22. Spectrogram U-Net with an LSTM bottleneck (CRN / Wave-U-Net-ish)
# ---------------------------------------------------------------------------------------------------------------


class EncoderBlock(nn.Module):
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ELU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DecoderBlock(nn.Module):
    def __init__(self, in_ch, out_ch, last=False):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(out_ch) if not last else nn.Identity()
        self.act = nn.ELU() if not last else nn.Sigmoid()

    def forward(self, x):
        return self.act(self.bn(self.deconv(x)))


class UNetLSTM(nn.Module):  # Tan & Wang "Convolutional Recurrent Network" for speech enhancement (U-Net + LSTM)
    def __init__(self, n_freq=32, channels=(16, 32), hidden=64):
        super().__init__()
        c1, c2 = channels
        self.enc1 = EncoderBlock(1, c1)
        self.enc2 = EncoderBlock(c1, c2)
        f_bott = n_freq // 4
        self.lstm = nn.LSTM(c2 * f_bott, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, c2 * f_bott)
        self.dec2 = DecoderBlock(c2 * 2, c1)
        self.dec1 = DecoderBlock(c1 * 2, 1, last=True)

    def forward(self, spec):
        # spec: (B, T, F) magnitude
        x = spec.unsqueeze(1)
        e1 = self.enc1(x)  # B, c1, T/2, F/2
        e2 = self.enc2(e1)  # B, c2, T/4, F/4
        b, c, t, f = e2.shape
        r = e2.permute(0, 2, 1, 3).reshape(b, t, c * f)
        r, _ = self.lstm(r)
        r = self.fc(r)
        r = r.reshape(b, t, c, f).permute(0, 2, 1, 3)
        d2 = self.dec2(torch.cat([r, e2], dim=1))
        mask = self.dec1(torch.cat([d2, e1], dim=1))
        return mask.squeeze(1) * spec


def _unet_inputs(batch, length):
    g = gen("unet_lstm", batch, length)
    return (randn(g, batch, length, 32).abs(),)


# ---------------------------------------------------------------------------------------------------------------
# 13. DPRNN: intra-/inter-chunk BiLSTMs over overlapping chunks
# ---------------------------------------------------------------------------------------------------------------


class SingleRNN(nn.Module):  # yluo42/TAC utility.models.SingleRNN
    def __init__(self, rnn_type, input_size, hidden_size, dropout=0, bidirectional=False):
        super().__init__()
        self.rnn_type = rnn_type
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_direction = int(bidirectional) + 1
        self.rnn = getattr(nn, rnn_type)(input_size, hidden_size, 1, dropout=dropout, batch_first=True,
                                         bidirectional=bidirectional)
        # linear projection layer
        self.proj = nn.Linear(hidden_size * self.num_direction, input_size)

    def forward(self, input):
        # input shape: batch, seq, dim
        output = input
        rnn_output, _ = self.rnn(output)
        rnn_output = self.proj(rnn_output.contiguous().view(-1, rnn_output.shape[2])).view(output.shape)
        return rnn_output


class DPRNN(nn.Module):  # yluo42 DPRNN block stack (row = intra-chunk, col = inter-chunk)
    def __init__(self, rnn_type, input_size, hidden_size, output_size, dropout=0, num_layers=1, bidirectional=True):
        super().__init__()
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size = hidden_size
        self.row_rnn = nn.ModuleList([])
        self.col_rnn = nn.ModuleList([])
        self.row_norm = nn.ModuleList([])
        self.col_norm = nn.ModuleList([])
        for _ in range(num_layers):
            self.row_rnn.append(SingleRNN(rnn_type, input_size, hidden_size, dropout, bidirectional=True))
            self.col_rnn.append(SingleRNN(rnn_type, input_size, hidden_size, dropout, bidirectional=bidirectional))
            self.row_norm.append(nn.GroupNorm(1, input_size, eps=1e-8))
            self.col_norm.append(nn.GroupNorm(1, input_size, eps=1e-8))
        self.output = nn.Sequential(nn.PReLU(), nn.Conv2d(input_size, output_size, 1))

    def forward(self, input):
        # input shape: batch, N, dim1, dim2
        # apply RNN on dim1 first and then dim2
        batch_size, _, dim1, dim2 = input.shape
        output = input
        for i in range(len(self.row_rnn)):
            row_input = output.permute(0, 3, 2, 1).contiguous().view(batch_size * dim2, dim1, -1)  # B*dim2, dim1, N
            row_output = self.row_rnn[i](row_input)  # B*dim2, dim1, H
            row_output = row_output.view(batch_size, dim2, dim1, -1).permute(0, 3, 2, 1).contiguous()  # B,N,dim1,dim2
            row_output = self.row_norm[i](row_output)
            output = output + row_output

            col_input = output.permute(0, 2, 3, 1).contiguous().view(batch_size * dim1, dim2, -1)  # B*dim1, dim2, N
            col_output = self.col_rnn[i](col_input)  # B*dim1, dim2, H
            col_output = col_output.view(batch_size, dim1, dim2, -1).permute(0, 3, 1, 2).contiguous()  # B,N,dim1,dim2
            col_output = self.col_norm[i](col_output)
            output = output + col_output

        output = self.output(output)  # B, output_size, dim1, dim2
        return output


class DPRNNSeparator(nn.Module):  # DPRNN-TasNet separator (Luo et al. 2020), run on a spectral front-end
    def __init__(self, n_feats=32, bn_dim=16, hidden=16, num_layers=2, segment_size=8, num_spk=2):
        super().__init__()
        self.n_feats = n_feats
        self.bn_dim = bn_dim
        self.segment_size = segment_size
        self.num_spk = num_spk
        self.norm = nn.GroupNorm(1, n_feats, eps=1e-8)
        self.BN = nn.Conv1d(n_feats, bn_dim, 1, bias=False)
        self.DPRNN = DPRNN("LSTM", bn_dim, hidden, bn_dim * num_spk, num_layers=num_layers, bidirectional=True)
        self.mask = nn.Conv1d(bn_dim, n_feats, 1)

    def pad_segment(self, input, segment_size):
        # input is the features: (B, N, T)
        batch_size, dim, seq_len = input.shape
        segment_stride = segment_size // 2

        rest = segment_size - (segment_stride + seq_len % segment_size) % segment_size
        if rest > 0:
            pad = torch.zeros(batch_size, dim, rest).type(input.type())
            input = torch.cat([input, pad], 2)

        pad_aux = torch.zeros(batch_size, dim, segment_stride).type(input.type())
        input = torch.cat([pad_aux, input, pad_aux], 2)

        return input, rest

    def split_feature(self, input, segment_size):
        # split the feature into chunks of segment size
        # input is the features: (B, N, T)
        input, rest = self.pad_segment(input, segment_size)
        batch_size, dim, seq_len = input.shape
        segment_stride = segment_size // 2

        segments1 = input[:, :, :-segment_stride].contiguous().view(batch_size, dim, -1, segment_size)
        segments2 = input[:, :, segment_stride:].contiguous().view(batch_size, dim, -1, segment_size)
        segments = torch.cat([segments1, segments2], 3).view(batch_size, dim, -1, segment_size).transpose(2, 3)

        return segments.contiguous(), rest

    def merge_feature(self, input, rest):
        # merge the splitted features into full utterance
        # input is the features: (B, N, L, K)
        batch_size, dim, segment_size, _ = input.shape
        segment_stride = segment_size // 2
        input = input.transpose(2, 3).contiguous().view(batch_size, dim, -1, segment_size * 2)  # B, N, K, L

        input1 = input[:, :, :, :segment_size].contiguous().view(batch_size, dim, -1)[:, :, segment_stride:]
        input2 = input[:, :, :, segment_size:].contiguous().view(batch_size, dim, -1)[:, :, :-segment_stride]

        output = input1 + input2
        if rest > 0:
            output = output[:, :, :-rest]

        return output.contiguous()  # B, N, T

    def forward(self, mix):
        # mix: (B, T, F) spectral features of the mixture
        batch_size = mix.size(0)
        enc_output = mix.transpose(1, 2)  # B, F, T
        enc_feature = self.BN(self.norm(enc_output))  # B, N, T
        enc_segments, enc_rest = self.split_feature(enc_feature, self.segment_size)  # B, N, L, K
        output = self.DPRNN(enc_segments).view(batch_size * self.num_spk, self.bn_dim, self.segment_size, -1)
        output = self.merge_feature(output, enc_rest)  # B*nspk, N, T
        masks = torch.sigmoid(self.mask(output)).view(batch_size, self.num_spk, self.n_feats, -1)
        return masks * enc_output.unsqueeze(1)  # B, nspk, F, T


def _dprnn_inputs(batch, length):
    g = gen("dprnn", batch, length)
    return (randn(g, batch, length, 32),)


# ---------------------------------------------------------------------------------------------------------------
# 7. TCN (dilated causal conv) front-end + LSTM
# ---------------------------------------------------------------------------------------------------------------


class Chomp1d(nn.Module):  # locuslab/TCN
    def __init__(self, chomp_size):
        super().__init__()
        self.chomp_size = chomp_size

    def forward(self, x):
        return x[:, :, : -self.chomp_size].contiguous()


class CausalConv1d(nn.Conv1d):  # the "pad left then conv" flavour found in many WaveNet/TCN ports
    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, padding=0, dilation=dilation, **kwargs)
        self.__padding = (kernel_size - 1) * dilation

    def forward(self, input):
        return super().forward(F.pad(input, (self.__padding, 0)))


class TemporalBlock(nn.Module):  # locuslab/TCN TemporalBlock (second conv swapped for the F.pad flavour)
    def __init__(self, n_inputs, n_outputs, kernel_size, stride, dilation, padding, dropout=0.2):
        super().__init__()
        self.conv1 = weight_norm(
            nn.Conv1d(n_inputs, n_outputs, kernel_size, stride=stride, padding=padding, dilation=dilation)
        )
        self.chomp1 = Chomp1d(padding)
        self.relu1 = nn.ReLU()
        self.dropout1 = nn.Dropout(dropout)

        self.conv2 = CausalConv1d(n_outputs, n_outputs, kernel_size, dilation=dilation)
        self.relu2 = nn.ReLU()
        self.dropout2 = nn.Dropout(dropout)

        self.net = nn.Sequential(self.conv1, self.chomp1, self.relu1, self.dropout1, self.conv2, self.relu2,
                                 self.dropout2)
        self.downsample = nn.Conv1d(n_inputs, n_outputs, 1) if n_inputs != n_outputs else None
        self.relu = nn.ReLU()
        self.init_weights()

    def init_weights(self):
        self.conv2.weight.data.normal_(0, 0.1)
        if self.downsample is not None:
            self.downsample.weight.data.normal_(0, 0.1)

    def forward(self, x):
        out = self.net(x)
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(out + res)


class TemporalConvNet(nn.Module):  # locuslab/TCN
    def __init__(self, num_inputs, num_channels, kernel_size=2, dropout=0.2):
        super().__init__()
        layers = []
        num_levels = len(num_channels)
        for i in range(num_levels):
            dilation_size = 2**i
            in_channels = num_inputs if i == 0 else num_channels[i - 1]
            out_channels = num_channels[i]
            layers += [TemporalBlock(in_channels, out_channels, kernel_size, stride=1, dilation=dilation_size,
                                     padding=(kernel_size - 1) * dilation_size, dropout=dropout)]

        self.network = nn.Sequential(*layers)

    def forward(self, x):
        return self.network(x)


class TCNLSTM(nn.Module):  # TCN feature extractor followed by an LSTM (forecasting / activity-recognition repos)
    def __init__(self, input_size=16, num_channels=(24, 32, 32), kernel_size=3, hidden=32, output_size=5):
        super().__init__()
        self.tcn = TemporalConvNet(input_size, list(num_channels), kernel_size=kernel_size, dropout=0.1)
        self.lstm = nn.LSTM(num_channels[-1], hidden, batch_first=True)
        self.linear = nn.Linear(hidden, output_size)

    def forward(self, x):
        # x: (N, L, C_in); TCN wants (N, C_in, L)
        y = self.tcn(x.transpose(1, 2))
        y, (h, _) = self.lstm(y.transpose(1, 2))
        return self.linear(y), h[-1]


def _tcn_inputs(batch, length):
    g = gen("tcn_lstm", batch, length)
    return (randn(g, batch, length, 16),)


# ---------------------------------------------------------------------------------------------------------------
# 8. DeepFilterNet grouped GRU + grouped linear (einsum)
# ---------------------------------------------------------------------------------------------------------------


class GroupedLinearEinsum(nn.Module):  # Rikorose/DeepFilterNet df/modules.py
    def __init__(self, input_size: int, hidden_size: int, groups: int = 1):
        super().__init__()
        # self.weight: Tensor
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.groups = groups
        assert input_size % groups == 0, f"Input size {input_size} not divisible by {groups}"
        assert hidden_size % groups == 0, f"Hidden size {hidden_size} not divisible by {groups}"
        self.ws = input_size // groups
        self.register_parameter(
            "weight",
            nn.Parameter(torch.zeros(groups, input_size // groups, hidden_size // groups), requires_grad=True),
        )
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # type: ignore

    def forward(self, x):
        # x: [..., I]
        b, t, _ = x.shape
        # new_shape = list(x.shape)[:-1] + [self.groups, self.ws]
        new_shape = (b, t, self.groups, self.ws)
        x = x.view(new_shape)
        # The better way, but not supported by torchscript
        # x = x.unflatten(-1, (self.groups, self.ws))  # [..., G, I/G]
        x = torch.einsum("btgi,gih->btgh", x, self.weight)  # [..., G, H/G]
        x = x.flatten(2, 3)  # [B, T, H]
        return x


class GroupedGRULayer(nn.Module):  # Rikorose/DeepFilterNet df/modules.py
    def __init__(self, input_size, hidden_size, groups, batch_first=True, bias=True, dropout=0.0, bidirectional=False):
        super().__init__()
        assert input_size % groups == 0
        assert hidden_size % groups == 0
        kwargs = {"bias": bias, "batch_first": batch_first, "dropout": dropout, "bidirectional": bidirectional}
        self.input_size = input_size // groups
        self.hidden_size = hidden_size // groups
        self.out_size = hidden_size
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.groups = groups
        self.batch_first = batch_first
        assert (self.hidden_size % groups) == 0, "Hidden size must be divisible by groups"
        self.layers = nn.ModuleList(nn.GRU(self.input_size, self.hidden_size, **kwargs) for _ in range(groups))

    def get_h0(self, batch_size: int = 1, device: torch.device = None):
        return torch.zeros(
            self.groups * self.num_directions,
            batch_size,
            self.hidden_size,
            device=device,
        )

    def forward(self, input, h0=None):
        # input shape: [B, T, I] if batch_first else [T, B, I], B: batch_size, I: input_size
        # state shape: [G*D, B, H], where G: groups, D: num_directions, H: hidden_size

        if h0 is None:
            dim0, dim1 = input.shape[:2]
            bs = dim0 if self.batch_first else dim1
            h0 = self.get_h0(bs, device=input.device)
        outputs = []
        outstates = []
        for i, layer in enumerate(self.layers):
            o, s = layer(
                input[..., i * self.input_size : (i + 1) * self.input_size],
                h0[i * self.num_directions : (i + 1) * self.num_directions].detach(),
            )
            outputs.append(o)
            outstates.append(s)
        output = torch.cat(outputs, dim=-1)
        h = torch.cat(outstates, dim=0)
        return output, h


class GroupedGRU(nn.Module):  # Rikorose/DeepFilterNet df/modules.py (with the inter-layer group shuffle)
    def __init__(self, input_size, hidden_size, num_layers=1, groups=4, bias=True, batch_first=True, dropout=0.0,
                 bidirectional=False, shuffle=True, add_outputs=False):
        super().__init__()
        kwargs = {"groups": groups, "bias": bias, "batch_first": batch_first, "dropout": dropout,
                  "bidirectional": bidirectional}
        assert input_size % groups == 0
        assert hidden_size % groups == 0
        assert num_layers > 0
        self.input_size = input_size
        self.groups = groups
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.hidden_size = hidden_size // groups
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        if groups == 1:
            shuffle = False  # Fully connected, no need to shuffle
        self.shuffle = shuffle
        self.add_outputs = add_outputs
        self.grus = nn.ModuleList()
        self.grus.append(GroupedGRULayer(input_size, hidden_size, **kwargs))
        for _ in range(1, num_layers):
            self.grus.append(GroupedGRULayer(hidden_size, hidden_size, **kwargs))

    def get_h0(self, batch_size=1, device=None):
        return torch.zeros(
            (self.num_layers * self.groups * self.num_directions, batch_size, self.hidden_size),
            device=device,
        )

    def forward(self, input, state=None):
        dim0, dim1, _ = input.shape
        b = dim0 if self.batch_first else dim1
        if state is None:
            state = self.get_h0(b, input.device)
        output = torch.zeros(dim0, dim1, self.hidden_size * self.num_directions * self.groups, device=input.device)
        outstates = []
        h = self.groups * self.num_directions
        for i, gru in enumerate(self.grus):
            input, s = gru(input, state[i * h : (i + 1) * h])
            outstates.append(s)
            if self.shuffle and i < self.num_layers - 1:
                input = input.view(dim0, dim1, -1, self.groups).transpose(2, 3).reshape(dim0, dim1, -1)
            if self.add_outputs:
                output += input
            else:
                output = input
        outstate = torch.cat(outstates, dim=0)
        return output, outstate


class DfGroupedGRUNet(nn.Module):  # DeepFilterNet ERB-decoder-ish: grouped linear -> grouped GRU -> grouped linear
    def __init__(self, n_feats=32, hidden=32, groups=4, num_layers=2):
        super().__init__()
        self.emb_in = nn.Sequential(GroupedLinearEinsum(n_feats, hidden, groups), nn.ReLU(inplace=True))
        self.emb_gru = GroupedGRU(hidden, hidden, num_layers=num_layers, groups=groups, batch_first=True,
                                  shuffle=True, add_outputs=True)
        self.emb_out = nn.Sequential(GroupedLinearEinsum(hidden, n_feats, groups), nn.Sigmoid())

    def forward(self, feat_erb):
        # feat_erb: [B, T, E]
        x = self.emb_in(feat_erb)
        x, h = self.emb_gru(x)
        m = self.emb_out(x)
        return m * feat_erb, h


def _dfnet_inputs(batch, length):
    g = gen("dfnet_grouped_gru", batch, length)
    return (randn(g, batch, length, 32),)


# ---------------------------------------------------------------------------------------------------------------
# 18. GRU + upsampling decoder
# ---------------------------------------------------------------------------------------------------------------


class UpsampleGRUDecoder(nn.Module):  # VQ-VAE speech decoder style (latents -> GRU -> x2 -> conv -> x2 -> conv)
    def __init__(self, latent_dim=16, hidden=32, n_mels=20):
        super().__init__()
        self.rnn = nn.GRU(latent_dim, hidden, batch_first=True, bidirectional=True)
        self.conv1 = nn.Conv1d(2 * hidden, hidden, kernel_size=3, padding=1)
        self.upsample = nn.Upsample(scale_factor=2, mode="linear")
        self.conv2 = nn.Conv1d(hidden, n_mels, kernel_size=5, padding=2)

    def forward(self, z):
        x, _ = self.rnn(z)  # B, T, 2H
        x = F.interpolate(x.transpose(1, 2), scale_factor=2, mode="nearest")  # B, 2H, 2T
        x = F.relu(self.conv1(x))
        x = self.upsample(x)  # B, H, 4T
        x = self.conv2(x)
        return x.transpose(1, 2)  # B, 4T, n_mels


def _upsample_inputs(batch, length):
    g = gen("upsample_gru_decoder", batch, length)
    return (randn(g, batch, length, 16),)


ENTRIES = [
    Entry("sed_crnn", seeded(SEDCRNN), _sed_inputs, ({0: "B", 1: "T"},), "audio",
          ("conv2d", "batchnorm2d", "glu_gate", "maxpool2d", "permute_reshape", "bigru", "sigmoid", "clamp",
           "attention_pooling")),
    Entry("kws_crnn", seeded(KWSCRNN), _kws_inputs, ({0: "B", 1: "T"},), "audio",
          ("conv2d", "batchnorm2d", "prelu", "leakyrelu", "adaptiveavgpool2d", "gru", "attention_pooling",
           "softmax")),
    Entry("rnnoise", seeded(RNNoise), _rnnoise_inputs, ({0: "B", 1: "T"},), "audio",
          ("linear", "tanh", "gru", "relu", "concat", "sigmoid")),
    Entry("unet_lstm", seeded(UNetLSTM), _unet_inputs, ({0: "B", 1: "T"},), "audio",
          ("conv2d_stride2", "batchnorm2d", "elu", "convtranspose2d", "skip_concat", "lstm", "permute_reshape",
           "sigmoid"), length_multiple=4, min_length=4),
    Entry("dprnn", seeded(DPRNNSeparator), _dprnn_inputs, ({0: "B", 1: "T"},), "audio",
          ("groupnorm", "conv1d", "chunking", "pad_cat", "bilstm", "permute_reshape", "prelu", "conv2d",
           "tensor_type_cast", "sigmoid"),
          # any length runs eagerly; multiples of segment_size keep pad_segment's `rest` (and its branch) constant
          length_multiple=8, min_length=8),
    Entry("tcn_lstm", seeded(TCNLSTM), _tcn_inputs, ({0: "B", 1: "T"},), "audio",
          ("conv1d_dilated", "weight_norm", "chomp", "f_pad", "residual_conv1x1", "lstm", "lstm_final_state")),
    Entry("dfnet_grouped_gru", seeded(DfGroupedGRUNet), _dfnet_inputs, ({0: "B", 1: "T"},), "audio",
          ("einsum", "grouped_linear", "gru_modulelist", "slice_features", "concat", "group_shuffle",
           "inplace_add", "sigmoid")),
    Entry("upsample_gru_decoder", seeded(UpsampleGRUDecoder), _upsample_inputs, ({0: "B", 1: "T"},), "audio",
          ("bigru", "interpolate_nearest", "upsample_linear", "conv1d", "relu")),
]
